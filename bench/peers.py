"""The single-host peers: the deployed app on SQLite behind its own Gunicorn.

Each peer runs the *same* code from the first app host's venv and source tree, with
the same Gunicorn config module, worker class, threads, timeout and log level, and as
many workers as the whole stack has (app hosts x workers), so CPU for Python is the
same on both sides. Differences, stated in the report: the peers are hit directly
(no nginx hop, which favours them) and have no Redis (reads go to SQLite).
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.options import BenchError
from infra import procfs
from infra.app_api import HEALTH_PATH
from infra.catalog import SERVICE_KINDS
from infra.paths import host_dir
from infra.topology import Topology

#: Log lines of the app that name SQLite's lock errors (counted per point).
LOCK_MESSAGES = ("database is locked", "database table is locked")


@dataclass(frozen=True)
class SqliteMode:
    """How a peer's SQLite is set up, and what that means for an acknowledged write."""

    tuned: bool
    synchronous: str
    description: str
    #: Does a write the app acknowledged (201) survive a power loss right after?
    durable: bool
    durability: str


SQLITE_MODES = {
    "sqlite-default": SqliteMode(
        False, "FULL", "Django defaults: rollback journal, deferred BEGIN, 5 s busy timeout",
        True, "yes: rollback journal with SQLite's default synchronous=FULL syncs every "
              "commit"),
    "sqlite-tuned": SqliteMode(
        True, "NORMAL", "WAL, BEGIN IMMEDIATE, synchronous=NORMAL, 5 s busy timeout",
        False, "no: in WAL mode synchronous=NORMAL does not sync the WAL at commit, so the "
               "last acknowledged commits can roll back after a power loss"),
    "sqlite-durable": SqliteMode(
        True, "FULL", "WAL, BEGIN IMMEDIATE, synchronous=FULL, 5 s busy timeout",
        True, "yes: synchronous=FULL syncs the WAL at every commit"),
}
#: Every peer's scratch directory is made here with this prefix (see reap_stale_peers).
WORK_ROOT = Path("/var/tmp")
WORK_PREFIX = "civicpulse-bench-"


@dataclass(frozen=True)
class DeployedApp:
    venv: Path
    src: Path
    log_level: str
    workers: int
    worker_class: str
    threads: int
    timeout_s: int
    hosts: int


def deployed_app(topology: Topology) -> DeployedApp:
    """The first app host's venv and source, and the stack's total Gunicorn sizing."""
    apps = topology.instances("app")
    base = host_dir(topology, apps[0].host) / "app"
    venv, src = base / "venv", base / "src"
    if not (venv / "bin" / "gunicorn").exists() or not (src / "civicpulse").is_dir():
        raise BenchError(f"no deployed app under {base} (venv/bin/gunicorn, src/civicpulse); "
                         f"deploy the stack first: invoke deploy --stack {topology.stack}")
    log_level = "INFO"
    with contextlib.suppress(OSError, ValueError):
        log_level = json.loads((base / "config.json").read_text()).get("log_level", "INFO")
    sizing = topology.sizing.app
    return DeployedApp(venv=venv, src=src, log_level=log_level,
                       workers=sizing.workers * len(apps), worker_class=sizing.worker_class,
                       threads=sizing.threads, timeout_s=sizing.timeout_s, hosts=len(apps))


def free_port(address: str) -> int:
    with socket.socket() as sock:
        sock.bind((address, 0))
        return sock.getsockname()[1]


def _runner() -> tuple[int, int] | None:
    """uid/gid of the app's service user when we are root (never run the app as root)."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(SERVICE_KINDS["app"].user)
    except KeyError:
        raise BenchError(f"user {SERVICE_KINDS['app'].user} does not exist; deploy a stack "
                         "first (it creates the service users)") from None
    return entry.pw_uid, entry.pw_gid


@dataclass
class SqlitePeer:
    name: str
    mode: SqliteMode
    address: str
    app: DeployedApp
    workdir: Path = field(default_factory=lambda: Path(
        tempfile.mkdtemp(prefix=WORK_PREFIX, dir=WORK_ROOT)))
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.address}:{self.port}"

    @property
    def db_path(self) -> Path:
        return self.workdir / "db.sqlite3"

    @property
    def log_path(self) -> Path:
        return self.workdir / "gunicorn.log"

    def describe(self) -> str:
        return (f"Gunicorn {self.app.workers} {self.app.worker_class} workers at {self.url} "
                f"(same venv and gunicorn_conf as the stack), SQLite {self.mode.description}"
                "; no nginx, no Redis")

    def _config(self) -> dict[str, Any]:
        return {
            "secret_key": secrets.token_urlsafe(48),
            "debug": False,
            "allowed_hosts": [self.address, "127.0.0.1", "localhost"],
            "log_level": self.app.log_level,
            "database": {"engine": "sqlite", "path": str(self.db_path),
                         "sqlite_tuned": self.mode.tuned,
                         # Django's defaults set no PRAGMA: SQLite's own FULL applies.
                         **({"sqlite_synchronous": self.mode.synchronous}
                            if self.mode.tuned else {})},
            "redis": None,
            # The report's read-then-write create, the benchmark's second write pattern.
            "report_pattern": True,
            "gunicorn": {"bind": f"{self.address}:{self.port}", "workers": self.app.workers,
                         "worker_class": self.app.worker_class, "threads": self.app.threads,
                         "timeout": self.app.timeout_s},
        }

    def _env(self) -> dict[str, str]:
        return {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "HOME": str(self.workdir),
            "CIVICPULSE_CONFIG": str(self.workdir / "config.json"),
            "PROMETHEUS_MULTIPROC_DIR": str(self.workdir / "metrics"),
            "PYTHONPATH": str(self.app.src),
            "PYTHONDONTWRITEBYTECODE": "1",
            "DJANGO_SETTINGS_MODULE": "civicpulse.settings",
        }

    def _prepare(self) -> dict[str, Any]:
        runner = _runner()
        self.port = self.port or free_port(self.address)
        (self.workdir / "metrics").mkdir(exist_ok=True)
        config = self.workdir / "config.json"
        fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(self._config(), fh)
        kwargs: dict[str, Any] = {}
        if runner:
            uid, gid = runner
            for path in (self.workdir, self.workdir / "metrics", config):
                os.chown(path, uid, gid)
            kwargs = {"user": uid, "group": gid, "extra_groups": []}
        return kwargs

    def start(self, timeout_s: float = 90.0) -> None:
        """Write the config, migrate the SQLite file, start Gunicorn, wait for health."""
        kwargs = self._prepare()
        python = str(self.app.venv / "bin" / "python")
        migrate = subprocess.run(
            [python, "-m", "civicpulse.cli", "migrate", "--noinput", "-v", "0"],
            cwd=self.app.src, env=self._env(), capture_output=True, text=True, timeout=180,
            **kwargs)
        if migrate.returncode != 0:
            raise BenchError(f"{self.name}: migrate failed: {migrate.stderr.strip()[-2000:]}")
        a = self.app
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            [str(a.venv / "bin" / "gunicorn"), "-c", "python:civicpulse.gunicorn_conf",
             "--bind", f"{self.address}:{self.port}", "--workers", str(a.workers),
             "--worker-class", a.worker_class, "--threads", str(a.threads),
             "--timeout", str(a.timeout_s), "--chdir", str(a.src),
             "civicpulse.wsgi:application"],
            cwd=a.src, env=self._env(), stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, **kwargs)
        log.close()
        # Lets a later run clean up after this one if it is killed (reap_stale_peers).
        (self.workdir / "owner.pid").write_text(f"{os.getpid()} {self.proc.pid}\n")
        self._wait_healthy(timeout_s)

    def _wait_healthy(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        last = ""
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                raise BenchError(f"{self.name}: gunicorn exited:\n{self.log_tail()}")
            try:
                resp = httpx.get(f"{self.url}{HEALTH_PATH}", timeout=2)
                if resp.status_code == 200:
                    return
                last = f"HTTP {resp.status_code}"
            except httpx.HTTPError as exc:
                last = type(exc).__name__
            time.sleep(0.3)
        raise BenchError(f"{self.name}: not healthy after {timeout_s:.0f}s ({last}):\n"
                         f"{self.log_tail()}")

    def log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0

    def lock_errors_since(self, offset: int) -> int:
        """Log lines naming an SQLite lock error written after `offset`."""
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(offset)
                text = fh.read().decode(errors="replace")
        except OSError:
            return 0
        return sum(1 for line in text.splitlines() if any(m in line for m in LOCK_MESSAGES))

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """SIGTERM the peer's process group (ours alone), SIGKILL after 20 s."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reap_stale_peers() -> list[Path]:
    """Stop peers left behind by a benchmark run that was killed, and remove their files.

    Only a Gunicorn recorded in a scratch directory whose owning run is gone is touched,
    and only if its environment still names that directory's config (pid reuse check).
    """
    reaped = []
    for workdir in WORK_ROOT.glob(f"{WORK_PREFIX}*"):
        try:
            owner, gunicorn = (int(x) for x in (workdir / "owner.pid").read_text().split())
        except (OSError, ValueError):
            continue
        if _alive(owner):
            continue
        if f"CIVICPULSE_CONFIG={workdir}/" in procfs.environ(gunicorn):  # '' if gone
            with contextlib.suppress(ProcessLookupError):
                os.killpg(gunicorn, signal.SIGTERM)
        shutil.rmtree(workdir, ignore_errors=True)
        reaped.append(workdir)
    return reaped
