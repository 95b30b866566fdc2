"""Real PostgreSQL 15, PgBouncer, Redis and Gunicorn processes for the app tests.

Everything listens on a 127.0.99.x loopback address on free ports, lives in one
temp directory and is torn down by `Stack.close()`. PostgreSQL and PgBouncer
refuse to run as root, so when the tests run as root those two run as the
`postgres` system user (and the temp directory is handed to that user).
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
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg

HOST = "127.0.99.1"
PG_BIN = Path("/usr/lib/postgresql/15/bin")
PGBOUNCER = Path("/usr/sbin/pgbouncer")
REDIS_SERVER = Path(shutil.which("redis-server") or "/usr/bin/redis-server")
APP_DIR = Path(__file__).resolve().parents[2] / "app"
DB_NAME = "civicpulse"
DB_USER = "civicpulse"


def missing_binaries() -> list[str]:
    needed = [PG_BIN / "initdb", PG_BIN / "postgres", PGBOUNCER, REDIS_SERVER]
    return [str(p) for p in needed if not os.access(p, os.X_OK)]


def free_port(host: str = HOST) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def wait_until(probe: Any, what: str, timeout: float = 30.0, interval: float = 0.1) -> Any:
    """Call `probe` until it returns a truthy value without raising; bounded by `timeout`."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            result = probe()
            if result:
                return result
        except Exception as exc:  # keep probing until the deadline
            last = exc
        time.sleep(interval)
    raise TimeoutError(f"{what} not ready after {timeout}s (last error: {last!r})")


def stop_process(proc: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM,
                 timeout: float = 15.0) -> None:
    """Signal the process group, wait, then SIGKILL whatever is left."""
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


class ServiceUser:
    """Who runs PostgreSQL and PgBouncer: `postgres` when we are root, else ourselves."""

    def __init__(self) -> None:
        self.is_root = os.geteuid() == 0
        entry = pwd.getpwnam("postgres") if self.is_root else pwd.getpwuid(os.geteuid())
        self.name, self.uid, self.gid = entry.pw_name, entry.pw_uid, entry.pw_gid

    def chown(self, path: Path) -> None:
        if self.is_root:
            os.chown(path, self.uid, self.gid)

    def command(self, argv: list[str]) -> list[str]:
        return ["runuser", "-u", self.name, "--", *argv] if self.is_root else argv

    def popen_kwargs(self) -> dict[str, Any]:
        # Popen(user=...) execs the server directly (no runuser parent), so the pid
        # we hold is the server's and signals reach it.
        return {"user": self.uid, "group": self.gid, "extra_groups": []} if self.is_root else {}


@dataclass
class Postgres:
    base: Path
    runner: ServiceUser
    port: int = field(default_factory=free_port)
    superuser_password: str = field(default_factory=lambda: secrets.token_hex(16))
    proc: subprocess.Popen[bytes] | None = None

    @property
    def data_dir(self) -> Path:
        return self.base / "pgdata"

    def init(self) -> None:
        pwfile = self.base / "pg-superuser-password"
        pwfile.write_text(self.superuser_password + "\n")
        self.runner.chown(pwfile)
        subprocess.run(
            self.runner.command([
                str(PG_BIN / "initdb"), "-D", str(self.data_dir), "-U", "postgres",
                "--auth=scram-sha-256", f"--pwfile={pwfile}", "-E", "UTF8", "--no-locale",
            ]),
            check=True, capture_output=True, timeout=120,
        )
        pwfile.unlink()

    def start(self) -> None:
        sock_dir = self.base / "pg-socket"
        sock_dir.mkdir(exist_ok=True)
        self.runner.chown(sock_dir)
        log = open(self.base / "postgres.log", "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(
            [str(PG_BIN / "postgres"), "-D", str(self.data_dir),
             "-c", f"listen_addresses={HOST}", "-p", str(self.port),
             "-c", f"unix_socket_directories={sock_dir}",
             "-c", "max_connections=100", "-c", "shared_buffers=64MB",
             "-c", "password_encryption=scram-sha-256"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            **self.runner.popen_kwargs(),
        )
        log.close()
        wait_until(lambda: self.sql("SELECT 1") == [(1,)], "PostgreSQL")

    def stop(self, sig: int = signal.SIGINT) -> None:
        # SIGINT is PostgreSQL's "fast" shutdown: disconnect clients, checkpoint.
        stop_process(self.proc, sig)
        self.proc = None

    def connect(self, dbname: str = "postgres", user: str = "postgres",
                password: str | None = None) -> psycopg.Connection[Any]:
        return psycopg.connect(
            host=HOST, port=self.port, dbname=dbname, user=user,
            password=self.superuser_password if password is None else password,
            connect_timeout=2, autocommit=True)

    def sql(self, query: str, params: Any = None, dbname: str = "postgres") -> list[Any]:
        with self.connect(dbname) as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else []


@dataclass
class PgBouncer:
    base: Path
    runner: ServiceUser
    pg_port: int
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def dir(self) -> Path:
        return self.base / "pgbouncer"

    def configure(self, scram_verifier: str) -> None:
        self.dir.mkdir(exist_ok=True)
        self.runner.chown(self.dir)
        # The userlist holds the SCRAM verifier copied from pg_authid, never the
        # password: PgBouncer verifies the client with it and then reuses the
        # client's proof to log in to PostgreSQL.
        (self.dir / "userlist.txt").write_text(f'"{DB_USER}" "{scram_verifier}"\n')
        (self.dir / "pgbouncer.ini").write_text(f"""\
[databases]
{DB_NAME} = host={HOST} port={self.pg_port} dbname={DB_NAME}

[pgbouncer]
listen_addr = {HOST}
listen_port = {self.port}
unix_socket_dir =
auth_type = scram-sha-256
auth_file = {self.dir / 'userlist.txt'}
pool_mode = transaction
max_client_conn = 500
default_pool_size = 20
server_connect_timeout = 2
server_login_retry = 1
query_wait_timeout = 10
client_login_timeout = 10
logfile = {self.dir / 'pgbouncer.log'}
""")
        for name in ("userlist.txt", "pgbouncer.ini"):
            os.chmod(self.dir / name, 0o600)
            self.runner.chown(self.dir / name)

    def start(self, app_password: str) -> None:
        self.proc = subprocess.Popen(
            [str(PGBOUNCER), str(self.dir / "pgbouncer.ini")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
            **self.runner.popen_kwargs(),
        )

        def probe() -> bool:
            with psycopg.connect(host=HOST, port=self.port, dbname=DB_NAME, user=DB_USER,
                                 password=app_password, connect_timeout=2,
                                 prepare_threshold=None, autocommit=True) as conn:
                return conn.execute("SELECT 1").fetchone() == (1,)

        wait_until(probe, "PgBouncer")

    def stop(self) -> None:
        # SIGINT is PgBouncer's safe shutdown; SIGTERM is immediate.
        stop_process(self.proc, signal.SIGTERM)
        self.proc = None


@dataclass
class Redis:
    base: Path
    port: int = field(default_factory=free_port)
    password: str = field(default_factory=lambda: secrets.token_hex(16))
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        rdir = self.base / "redis"
        rdir.mkdir(exist_ok=True)
        conf = rdir / "redis.conf"
        # The password goes in a 0600 file, not on the command line where ps shows it.
        conf.write_text(
            f"bind {HOST}\nport {self.port}\nprotected-mode yes\n"
            f"requirepass {self.password}\nsave \"\"\nappendonly no\n"
            f"dir {rdir}\ndaemonize no\nlogfile {rdir / 'redis.log'}\n")
        os.chmod(conf, 0o600)
        self.proc = subprocess.Popen(
            [str(REDIS_SERVER), str(conf)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        wait_until(self.ping, "Redis")

    def ping(self) -> bool:
        import redis

        client = redis.Redis(host=HOST, port=self.port, password=self.password,
                             socket_timeout=1, socket_connect_timeout=1)
        try:
            return bool(client.ping())
        finally:
            client.close()

    def stop(self) -> None:
        stop_process(self.proc, signal.SIGTERM)
        self.proc = None

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@{HOST}:{self.port}/0"


def child_pids(pid: int) -> list[int]:
    """Direct children of `pid` (Gunicorn workers of a master)."""
    kids: list[int] = []
    with contextlib.suppress(FileNotFoundError):
        for task in os.listdir(f"/proc/{pid}/task"):
            text = Path(f"/proc/{pid}/task/{task}/children").read_text()
            kids.extend(int(x) for x in text.split())
    return kids


@dataclass
class Gunicorn:
    """A real Gunicorn master serving the app from the source tree."""

    workdir: Path
    config_path: Path
    port: int
    host: str = HOST
    proc: subprocess.Popen[bytes] | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    #: Port of the master's own /metrics listener (`gunicorn.metrics_bind`), if any.
    metrics_port: int | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def metrics_url(self) -> str:
        """Where Prometheus would scrape: the master's listener, else the workers'."""
        if self.metrics_port:
            return f"http://{self.host}:{self.metrics_port}/metrics"
        return f"{self.base_url}/metrics"

    @property
    def metrics_dir(self) -> Path:
        return self.workdir / "prometheus"

    @property
    def log_path(self) -> Path:
        return self.workdir / "gunicorn.log"

    def start(self, timeout: float = 30.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.metrics_dir.mkdir(exist_ok=True)
        env = app_env(self.config_path)
        env["PROMETHEUS_MULTIPROC_DIR"] = str(self.metrics_dir)
        env.update(self.extra_env)
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "python:civicpulse.gunicorn_conf"],
            cwd=self.workdir, env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

        def probe() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited: {self.log_tail()}")
            return all(httpx.get(url, timeout=2).status_code == 200
                       for url in {f"{self.base_url}/metrics", self.metrics_url})

        wait_until(probe, f"Gunicorn on {self.base_url}", timeout=timeout)

    def worker_pids(self) -> list[int]:
        return child_pids(self.proc.pid) if self.proc else []

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        stop_process(self.proc, signal.SIGTERM, timeout=30)
        if self.proc is not None:
            # A test may have killed the master: its orphaned workers are still in the
            # process group (start_new_session), and must not outlive the test.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc = None


def app_env(config_path: Path) -> dict[str, str]:
    """Environment for app subprocesses: source tree on the path, config named."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("CIVICPULSE") and k != "PROMETHEUS_MULTIPROC_DIR"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(APP_DIR), env.get("PYTHONPATH")]))
    env["CIVICPULSE_CONFIG"] = str(config_path)
    env["DJANGO_SETTINGS_MODULE"] = "civicpulse.settings"
    return env


def manage(config_path: Path, *args: str, timeout: float = 120) -> str:
    """Run a management command against the given config; returns stdout."""
    result = subprocess.run(
        [sys.executable, "-m", "civicpulse.cli", *args], env=app_env(config_path),
        capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"manage {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def write_config(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(json.dumps(config, indent=2))
    os.chmod(path, 0o600)
    return path


@dataclass
class Stack:
    """PostgreSQL + PgBouncer + Redis, with the app's schema migrated."""

    base: Path
    runner: ServiceUser
    postgres: Postgres
    pgbouncer: PgBouncer
    redis: Redis
    app_password: str
    secret_key: str = field(default_factory=lambda: secrets.token_urlsafe(48))
    gunicorns: list[Gunicorn] = field(default_factory=list)

    def app_config(self, **overrides: Any) -> dict[str, Any]:
        """The JSON config a deploy would write, pointed at PgBouncer and Redis."""
        config: dict[str, Any] = {
            "secret_key": self.secret_key,
            "debug": False,
            "allowed_hosts": [HOST, "127.0.0.1", "localhost", "testserver"],
            "log_level": "INFO",
            "database": {
                "engine": "postgresql", "host": HOST, "port": self.pgbouncer.port,
                "name": DB_NAME, "user": DB_USER, "password": self.app_password,
                "connect_timeout": 2, "statement_timeout_ms": 2000, "conn_max_age": 0,
                "pgbouncer": True,
            },
            "redis": {
                "url": self.redis.url, "socket_timeout": 0.25, "connect_timeout": 0.25,
                "ttl": 300, "breaker_failures": 3, "breaker_reset_s": 2,
            },
            "gunicorn": {"bind": f"{HOST}:{free_port()}", "workers": 2, "timeout": 30},
        }
        for key, value in overrides.items():
            if isinstance(value, dict) and isinstance(config.get(key), dict):
                config[key] = {**config[key], **value}
            else:
                config[key] = value
        return config

    def gunicorn(self, name: str, config: dict[str, Any],
                 extra_env: dict[str, str] | None = None) -> Gunicorn:
        """Start a Gunicorn for `config`; stopped by close() if the test does not."""
        workdir = self.base / f"gunicorn-{name}"
        workdir.mkdir(parents=True, exist_ok=True)
        cfg_path = write_config(workdir / "config.json", config)
        port = int(config["gunicorn"]["bind"].rsplit(":", 1)[1])
        metrics_bind = config["gunicorn"].get("metrics_bind")
        server = Gunicorn(workdir, cfg_path, port, extra_env=extra_env or {},
                          metrics_port=int(metrics_bind.rsplit(":", 1)[1]) if metrics_bind
                          else None)
        self.gunicorns.append(server)
        server.start()
        return server

    def app_db(self) -> psycopg.Connection[Any]:
        """Direct (not pooled) connection as the app role, for assertions."""
        return self.postgres.connect(DB_NAME, DB_USER, self.app_password)

    def close(self) -> None:
        for server in self.gunicorns:
            server.stop()
        self.redis.stop()
        self.pgbouncer.stop()
        self.postgres.stop()
        shutil.rmtree(self.base, ignore_errors=True)


@contextlib.contextmanager
def running_stack() -> Iterator[Stack]:
    """Start everything, migrate, yield; always tear down."""
    runner = ServiceUser()
    base = Path(tempfile.mkdtemp(prefix="civicpulse-test-"))
    runner.chown(base)
    postgres = Postgres(base, runner)
    pgbouncer = PgBouncer(base, runner, pg_port=postgres.port)
    redis_server = Redis(base)
    app_password = secrets.token_hex(16)
    stack = Stack(base, runner, postgres, pgbouncer, redis_server, app_password)
    try:
        postgres.init()
        postgres.start()
        # Passwords travel as bound parameters are impossible for utility
        # statements; a hex token needs no quoting.
        postgres.sql(f"CREATE ROLE {DB_USER} LOGIN PASSWORD '{app_password}'")
        postgres.sql(f"CREATE DATABASE {DB_NAME} OWNER {DB_USER}")
        # Schema and role settings go straight to PostgreSQL, before PgBouncer
        # opens server sessions that would predate the role's statement_timeout.
        direct = stack.app_config(database={"port": postgres.port, "pgbouncer": False})
        config_path = write_config(base / "migrate-config.json", direct)
        manage(config_path, "migrate", "--noinput", "-v", "0")
        manage(config_path, "sync_db_role_settings")
        verifier = postgres.sql("SELECT rolpassword FROM pg_authid WHERE rolname = %s",
                                [DB_USER])[0][0]
        pgbouncer.configure(verifier)
        pgbouncer.start(app_password)
        redis_server.start()
        yield stack
    finally:
        stack.close()


def main(argv: list[str] | None = None) -> int:
    """Bring the stack up with one Gunicorn, run measure_post.py against it, tear down.

    python tests/app/civicpulse_stack.py --workers 4 -- --concurrency 50 --duration 15
    """
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--worker-class", default="sync", choices=("sync", "gthread"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--log-level", default="WARNING")
    parser.add_argument("measure_args", nargs="*", help="passed to app/scripts/measure_post.py")
    args = parser.parse_args(argv)
    with running_stack() as stack:
        config = stack.app_config(
            log_level=args.log_level,
            gunicorn={"bind": f"{HOST}:{free_port()}", "workers": args.workers,
                      "worker_class": args.worker_class, "threads": args.threads})
        server = stack.gunicorn("measure", config)
        print(f"gunicorn {args.worker_class} workers={args.workers} threads={args.threads} "
              f"at {server.base_url}", flush=True)
        return subprocess.run(
            [sys.executable, str(APP_DIR / "scripts" / "measure_post.py"),
             "--url", server.base_url, *args.measure_args], timeout=400).returncode


if __name__ == "__main__":
    sys.exit(main())
