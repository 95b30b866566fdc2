"""The docker target's entry points: `invoke deploy|destroy --target docker`.

Drives the Pulumi program of `infra.docker` through the Pulumi Automation API: an
inline program, a `file://<state_dir>/pulumi` backend (no Pulumi Cloud login) and
the passphrase secrets provider with a generated passphrase kept next to the
stack's other secrets. Deploy then waits until the app answers through nginx's
published port, the same URL as on the local target (`topology.app_url`).

Errors are `DockerTargetError`, an `invoke.Exit`: tasks.py can call these functions
as they are and the user gets the message and a non-zero exit code, no traceback.
"""

from __future__ import annotations

import json
import os
import secrets as pysecrets
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import httpx
from invoke import Exit

from infra.paths import pulumi_dir, pulumi_home, secrets_dir
from infra.topology import Topology
from infra.yaml_source import ConfigError

if TYPE_CHECKING:
    from rich.console import Console

PROJECT = "civicpulse"
PASSPHRASE_FILE = "pulumi_passphrase"
DOCKER_SOCKET = Path("/var/run/docker.sock")
#: Pulumi plugins the program needs, with the versions of the installed SDKs.
PLUGIN_PACKAGES = ("pulumi_docker", "pulumi_random")

#: Exit codes: 2 = the stack config is wrong (as tasks.py), 3 = this machine lacks a
#: prerequisite (Pulumi CLI, Docker engine), 1 = the deploy or destroy failed.
EXIT_FAILED = 1
EXIT_CONFIG = 2
EXIT_PREREQUISITE = 3

INSTALL_PULUMI = ("install the Pulumi CLI: `curl -fsSL https://get.pulumi.com | sh` and add "
                  "~/.pulumi/bin to PATH (https://www.pulumi.com/docs/install/); the "
                  "Python SDKs in the venv are not enough, the CLI runs the engine and "
                  "downloads the docker and random provider plugins")
INSTALL_DOCKER = ("install Docker Engine (https://docs.docker.com/engine/install/debian/: "
                  "`apt-get install docker-ce docker-ce-cli containerd.io`, or Debian's "
                  "`apt-get install docker.io`), start it (`systemctl start docker`, or "
                  "`dockerd &` where there is no systemd) and check that `docker info` works "
                  "for this user (root, or a member of the `docker` group)")


class DockerTargetError(Exit):
    """The docker target stopped; the message says why and what to do."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message, code=code)
        self.message = message

    def __str__(self) -> str:
        return self.message


# --- prerequisites ---------------------------------------------------------------------
def _docker_endpoint() -> str:
    return os.environ.get("DOCKER_HOST") or f"unix://{DOCKER_SOCKET}"


def _engine_reachable(endpoint: str) -> str | None:
    """None if something answers at the engine endpoint, else why not."""
    parsed = urlparse(endpoint)
    try:
        if parsed.scheme == "unix":
            path = Path(parsed.path)
            if not path.exists():
                return f"{path} does not exist"
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(2)
                sock.connect(str(path))
        elif parsed.scheme in ("tcp", "http", "https"):
            with socket.create_connection((parsed.hostname or "localhost",
                                           parsed.port or 2375), timeout=2):
                pass
        else:
            return None  # ssh:// and the like: let `docker info` decide
    except OSError as exc:
        return f"cannot connect to {endpoint}: {exc.strerror or exc}"
    return None


def prerequisite_problems(run: Callable[..., subprocess.CompletedProcess] = subprocess.run
                          ) -> list[str]:
    """What this machine lacks for the docker target, each with how to fix it."""
    problems = []
    if not shutil.which("pulumi"):
        problems.append(f"the Pulumi CLI (`pulumi`) is not on PATH: {INSTALL_PULUMI}")
    endpoint = _docker_endpoint()
    why = _engine_reachable(endpoint)
    if why:
        problems.append(f"no Docker engine at {endpoint} ({why}): {INSTALL_DOCKER}")
    elif shutil.which("docker"):
        try:
            info = run(["docker", "info", "--format", "{{.ServerVersion}}"],
                       capture_output=True, text=True, timeout=20, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            problems.append(f"`docker info` failed ({exc}): {INSTALL_DOCKER}")
        else:
            if info.returncode != 0:
                detail = (info.stderr or info.stdout).strip().splitlines()
                problems.append(f"`docker info` failed ({detail[-1] if detail else 'no output'}"
                                f"): {INSTALL_DOCKER}")
    else:
        # The provider talks to the socket itself; the CLI is for the GameDay driver.
        problems.append("the `docker` CLI is not on PATH (the GameDay driver of the docker "
                        "target uses it): install docker-ce-cli or docker.io")
    return problems


def check_prerequisites() -> None:
    problems = prerequisite_problems()
    if problems:
        raise DockerTargetError("the docker target cannot run on this machine, nothing was "
                                "changed:\n  - " + "\n  - ".join(problems),
                                code=EXIT_PREREQUISITE)


# --- Pulumi workspace ------------------------------------------------------------------
def ensure_passphrase(topology: Topology) -> str:
    """The passphrase of the stack's Pulumi secrets: generated once, 0600, then reused."""
    directory = secrets_dir(topology)
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    path = directory / PASSPHRASE_FILE
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(pysecrets.token_urlsafe(32))
    return path.read_text().strip()


def plugin_versions() -> dict[str, str]:
    """Provider plugins to install: the versions the installed SDKs were generated for.

    An inline program gives the CLI no requirements file to read them from.
    """
    import importlib.resources

    versions = {}
    for package in PLUGIN_PACKAGES:
        meta = json.loads(importlib.resources.files(package).joinpath("pulumi-plugin.json")
                          .read_text())
        versions[meta["name"]] = "v" + meta["version"]
    return versions


@dataclass(frozen=True)
class Workspace:
    project_settings: Any
    env_vars: dict[str, str]
    backend_url: str


def workspace_settings(topology: Topology) -> Workspace:
    """Project settings and environment of the stack's Automation API workspace."""
    from pulumi import automation as auto

    backend = pulumi_dir(topology)
    backend.mkdir(parents=True, exist_ok=True)
    os.chmod(backend, 0o700)
    url = f"file://{backend}"
    settings = auto.ProjectSettings(name=PROJECT, runtime="python",
                                    backend=auto.ProjectBackend(url=url))
    env = {"PULUMI_CONFIG_PASSPHRASE": ensure_passphrase(topology),
           "PULUMI_BACKEND_URL": url,
           "PULUMI_SKIP_UPDATE_CHECK": "true",
           "PULUMI_HOME": str(pulumi_home(topology))}
    return Workspace(project_settings=settings, env_vars=env, backend_url=url)


def _stack(topology: Topology, publish_monitoring: bool, create: bool = True) -> Any:
    from pulumi import automation as auto

    from infra.docker.program import define_stack

    ws = workspace_settings(topology)
    opts = auto.LocalWorkspaceOptions(project_settings=ws.project_settings,
                                      env_vars=ws.env_vars, secrets_provider="passphrase",
                                      work_dir=str(pulumi_dir(topology)),
                                      pulumi_home=ws.env_vars["PULUMI_HOME"])

    def program() -> None:
        define_stack(topology, publish_monitoring=publish_monitoring)

    if create:
        stack = auto.create_or_select_stack(stack_name=topology.stack, project_name=PROJECT,
                                            program=program, opts=opts)
    else:
        stack = auto.select_stack(stack_name=topology.stack, project_name=PROJECT,
                                  program=program, opts=opts)
    stack.set_config("publish_monitoring",
                     auto.ConfigValue(value="true" if publish_monitoring else "false"))
    return stack


def _printer(console: Console) -> Callable[[str], None]:
    def emit(line: str) -> None:
        console.print(line.rstrip("\n"), markup=False, highlight=False)
    return emit


def _command_error(action: str, exc: Exception) -> DockerTargetError:
    text = str(exc).strip().splitlines()
    tail = "\n  ".join(text[-15:]) if text else repr(exc)
    return DockerTargetError(f"pulumi {action} failed for the docker target:\n  {tail}")


# --- deploy / destroy ------------------------------------------------------------------
def write_secret_files(topology: Topology, values: dict[str, str]) -> list[Path]:
    """Put the generated secrets where the rest of the tooling reads them (0600).

    `infra.health` probes and the GameDay data checks read `<state_dir>/secrets/<name>`
    on every target.
    """
    directory = secrets_dir(topology)
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    written = []
    for name, value in sorted(values.items()):
        path = directory / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(value)
        os.chmod(path, 0o600)
        written.append(path)
    return written


def wait_for_app(topology: Topology, timeout_s: float = 180,
                 get: Callable[..., httpx.Response] = httpx.get,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> str:
    """Poll the app's health URL through nginx's published port until it answers 200."""
    url = topology.app_url.rstrip("/") + topology.workload.health_path
    deadline = clock() + timeout_s
    last = "no answer yet"
    while True:
        try:
            response = get(url, timeout=2.0)
            if response.status_code == 200:
                return url
            last = f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            last = f"{type(exc).__name__}: {exc}"
        if clock() >= deadline:
            raise DockerTargetError(
                f"the containers are up but {url} did not answer 200 within {timeout_s:g}s "
                f"(last: {last}); look at `docker ps --filter label=civicpulse.stack="
                f"{topology.stack}` and `docker logs cp-{topology.stack}-<host>-<service>`")
        sleep(1.0)


def status_docker(topology: Topology,
                  run: Callable[..., subprocess.CompletedProcess] = subprocess.run
                  ) -> dict[str, Any]:
    """Every container of the stack with Docker's state and health check result.

    The same shape as `infra.local_target.status`, for `invoke status --target docker`.
    Only nginx is reachable from the Docker host, so health is Docker's health check
    (run inside each container), not infra.health's probes.
    """
    from infra.docker.services import plan

    rows = []
    for spec in plan(topology).containers:
        name = f"cp-{topology.stack}-{spec.host}-{spec.service}"
        try:
            proc = run(["docker", "inspect", "--format", "{{json .State}}", name],
                       capture_output=True, text=True, timeout=15, check=False)
            raw = json.loads(proc.stdout) if proc.returncode == 0 else None
        except (OSError, subprocess.TimeoutExpired, json.JSONDecodeError):
            raw = None
        if raw is None:
            state, healthy, detail = "ABSENT", False, f"no container {name}"
        else:
            state = str(raw.get("Status", "unknown")).upper()
            health = (raw.get("Health") or {}).get("Status")
            healthy = state == "RUNNING" and health in ("healthy", None)
            detail = f"health check: {health}" if health else "no health check (scratch image)"
        rows.append({"host": spec.host, "service": spec.service,
                     "address": f"{spec.host}:{spec.port}", "state": state,
                     "healthy": healthy, "detail": detail})
    return {"stack": topology.stack, "services": rows, "endpoints": {"app": topology.app_url}}


def deploy_docker(topology: Topology, console: Console, publish_monitoring: bool = False,
                  ready_timeout_s: float = 180) -> dict[str, Any]:
    """Create or update the stack in Docker and wait until the app is healthy.

    Returns the stack outputs (secrets removed). Raises DockerTargetError.
    """
    check_prerequisites()
    from pulumi import automation as auto

    from infra.docker.services import plan

    try:
        plan(topology, publish_monitoring)  # config problems before touching anything
    except ConfigError as exc:
        raise DockerTargetError("the stack cannot run on the docker target:\n  " +
                                "\n  ".join(exc.problems), code=EXIT_CONFIG) from None
    started = time.monotonic()
    try:
        stack = _stack(topology, publish_monitoring)
        for name, version in plugin_versions().items():
            console.print(f"pulumi plugin {name} {version}")
            stack.workspace.install_plugin(name, version)
        result = stack.up(on_output=_printer(console), color="never")
    except auto.errors.CommandError as exc:
        raise _command_error("up", exc) from None
    outputs = {k: v.value for k, v in result.outputs.items()}
    secret_values = outputs.pop("secrets", None) or {}
    write_secret_files(topology, secret_values)
    console.print(f"pulumi up: {result.summary.result} in {time.monotonic() - started:.0f}s; "
                  "waiting for the app through nginx…")
    try:
        url = wait_for_app(topology, ready_timeout_s)
    except DockerTargetError as exc:
        sick = [f"{r['host']}/{r['service']}: {r['state']}, {r['detail']}"
                for r in status_docker(topology)["services"] if not r["healthy"]]
        if sick:
            raise DockerTargetError(f"{exc.message}\n  unhealthy:\n    " + "\n    ".join(sick)
                                    ) from None
        raise
    console.print(f"app healthy at {url}")
    return outputs


def destroy_docker(topology: Topology, console: Console) -> None:
    """Delete every container, volume (data!) and the network of the stack."""
    check_prerequisites()
    from pulumi import automation as auto

    if not pulumi_dir(topology).is_dir():
        console.print(f"stack {topology.stack}: no docker deployment found in "
                      f"{pulumi_dir(topology)}; nothing to destroy")
        return
    try:
        stack = _stack(topology, publish_monitoring=False, create=False)
    except auto.errors.StackNotFoundError:
        console.print(f"stack {topology.stack}: no Pulumi stack in {pulumi_dir(topology)}; "
                      "nothing to destroy")
        return
    except auto.errors.CommandError as exc:
        raise _command_error("stack select", exc) from None
    try:
        stack.destroy(on_output=_printer(console), color="never")
        stack.workspace.remove_stack(topology.stack)
    except auto.errors.CommandError as exc:
        raise _command_error("destroy", exc) from None
    console.print(f"stack {topology.stack}: containers, volumes and network destroyed")
