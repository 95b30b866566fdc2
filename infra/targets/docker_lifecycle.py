"""The docker target's lifecycle: deploy, status and destroy of a stack in Docker.

Drives the Pulumi program of `infra.docker` through the Pulumi Automation API, in the
stack's own workspace (`infra.docker.workspace`). Deploy then waits until the app
answers through nginx's published port, the same URL as on the local target
(`topology.app_url`). Pulumi's output goes to the caller line by line
(`ProgressSink.line`); errors are `DockerTargetError`s (missing prerequisites and a
stack config Docker cannot run are their own kinds), which tasks.py maps to exit codes.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from infra.docker.prerequisites import prerequisite_problems
from infra.docker.workspace import plugin_versions, pulumi_stack
from infra.paths import pulumi_dir, secrets_dir
from infra.targets.base import PrerequisiteMissing, ProgressSink, TargetError, TargetUnfit
from infra.topology import Topology
from infra.yaml_source import ConfigError


class DockerTargetError(TargetError):
    """The docker target stopped; the message says why and what to do."""


class DockerPrerequisitesMissing(DockerTargetError, PrerequisiteMissing):
    """No Pulumi CLI, Docker engine or docker CLI here; nothing was changed."""


class DockerStackUnfit(DockerTargetError, TargetUnfit):
    """The stack config cannot run on the docker target; nothing was changed."""


def check_prerequisites() -> None:
    problems = prerequisite_problems()
    if problems:
        raise DockerPrerequisitesMissing("the docker target cannot run on this machine, "
                                         "nothing was changed:\n  - " + "\n  - ".join(problems))


def _lines(progress: ProgressSink) -> Callable[[str], None]:
    def emit(line: str) -> None:
        progress.line(line.rstrip("\n"))
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

    The same shape as `infra.targets.local_lifecycle.status`, for `invoke status --target docker`.
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


def deploy_docker(topology: Topology, progress: ProgressSink, publish_monitoring: bool = False,
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
        raise DockerStackUnfit("the stack cannot run on the docker target:\n  " +
                               "\n  ".join(exc.problems)) from None
    started = time.monotonic()
    try:
        stack = pulumi_stack(topology, publish_monitoring)
        for name, version in plugin_versions().items():
            progress.line(f"pulumi plugin {name} {version}")
            stack.workspace.install_plugin(name, version)
        result = stack.up(on_output=_lines(progress), color="never")
    except auto.errors.CommandError as exc:
        raise _command_error("up", exc) from None
    outputs = {k: v.value for k, v in result.outputs.items()}
    secret_values = outputs.pop("secrets", None) or {}
    write_secret_files(topology, secret_values)
    progress.line(f"pulumi up: {result.summary.result} in {time.monotonic() - started:.0f}s; "
                  "waiting for the app through nginx…")
    try:
        url = wait_for_app(topology, ready_timeout_s)
    except DockerTargetError as exc:
        sick = [f"{r['host']}/{r['service']}: {r['state']}, {r['detail']}"
                for r in status_docker(topology)["services"] if not r["healthy"]]
        if sick:
            raise DockerTargetError(f"{exc}\n  unhealthy:\n    " + "\n    ".join(sick)
                                    ) from None
        raise
    progress.line(f"app healthy at {url}")
    return outputs


def destroy_docker(topology: Topology, progress: ProgressSink) -> None:
    """Delete every container, volume (data!) and the network of the stack."""
    check_prerequisites()
    from pulumi import automation as auto

    if not pulumi_dir(topology).is_dir():
        progress.line(f"stack {topology.stack}: no docker deployment found in "
                      f"{pulumi_dir(topology)}; nothing to destroy")
        return
    try:
        stack = pulumi_stack(topology, publish_monitoring=False, create=False)
    except auto.errors.StackNotFoundError:
        progress.line(f"stack {topology.stack}: no Pulumi stack in {pulumi_dir(topology)}; "
                      "nothing to destroy")
        return
    except auto.errors.CommandError as exc:
        raise _command_error("stack select", exc) from None
    try:
        stack.destroy(on_output=_lines(progress), color="never")
        stack.workspace.remove_stack(topology.stack)
    except auto.errors.CommandError as exc:
        raise _command_error("destroy", exc) from None
    progress.line(f"stack {topology.stack}: containers, volumes and network destroyed")
