"""The docker target driver: the GameDay engine's `Target` for a stack in Docker.

Everything goes through the `docker` CLI (subprocess; no docker-py dependency), on
the containers `infra.docker` deploys: one container per service per host, each
joined to its host's network namespace, owned by a sandbox container that carries
the host's alias and address on the stack network (`infra.docker.layout`).

How each action maps (and how it differs from the local target):

- `state` / `start` / `stop`: `docker inspect` / `docker start` / `docker stop`.
  `docker stop` counts as a manual stop: the restart policy leaves it down until
  `start`, like `supervisorctl stop`.
- `kill` (a crash): the signal goes to the container's main process *from the Docker
  host* (its host pid, from `docker inspect`), so Docker sees the process die and the
  `unless-stopped` restart policy brings it back, as supervisord does locally.
  `docker kill` would count as a manual stop and leave it down; it is used only when
  the host pid is not visible (engine in a VM, e.g. Docker Desktop).
- `pause` / `resume` (a hang): `docker pause` / `docker unpause` (the cgroup freezer
  stops every process of the container at once), plus SIGCONT for processes stopped
  by signal (`signal_pids`).
- `run(host, argv)`: `docker exec` in the container of the host's service whose
  local-target user is `user` (`cp-postgresql` → the PostgreSQL container), else in
  the host's first service, as that user (the images have the local target's cp-*
  users; `user="root"` becomes `-u 0`).
- network faults: iptables rules in the *destination host's* namespace, in a chain of
  our own (`CIVICPULSE_GAMEDAY`, hooked into INPUT), written by a throwaway helper
  container sharing that namespace (`docker run --rm --network container:<sandbox>
  --cap-add NET_ADMIN`). Clients are told apart by their host's address on the stack
  network (locally they are told apart by uid). Removal deletes the chain in every
  host of the stack, recorded or not, so a crashed engine's rules go too.
  `disconnect_host` / `connect_host` pull a whole host off the network and back
  (same alias, same address).
- the ops CLI (`python -m infra.ops status/logs/restart`): only nginx is reachable from
  the Docker host, so health is Docker's health check result (`State.Health` of `docker
  inspect`, the last probe's output as detail; without a health check, running is
  healthy), and liveness is asked inside the container (`alive`). Logs are `docker
  logs` (both streams, merged in time order); a restart is `docker restart` with the
  container's own stop timeout. A missing container is `ServiceAbsent`, in words.

Not verified end to end: the machine this was written on has no Docker engine.
The unit tests (tests/unit/test_docker_driver.py) check the exact commands issued
with a fake runner; whether each image behaves as assumed is for the first real run.
"""

from __future__ import annotations

import contextlib
import heapq
import json
import os
import re
import shlex
import signal
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from infra import procfs
from infra.docker.images import image_name
from infra.docker.layout import DockerLayout, HostLayout, layout_for
from infra.health import Health
from infra.targets import docker_lifecycle
from infra.targets.base import (
    ABSENT,
    CommandResult,
    Deployed,
    NetworkFault,
    ProgressSink,
    RestartFailed,
    ServiceAbsent,
    ServiceError,
    ServiceLog,
    ServiceState,
    Target,
    run_command,
)
from infra.targets.port_forward import PortForward, relay_command
from infra.topology import Service, Topology

DOCKER = "docker"
CHAIN = "CIVICPULSE_GAMEDAY"
STOP_TIMEOUT_S = 20
#: Docker's State.Status → the supervisor's words the engine and reports use.
STATES = {"running": "RUNNING", "restarting": "BACKOFF", "paused": "RUNNING",
          "created": "STOPPED", "exited": "EXITED", "dead": "FATAL", "removing": "STOPPING"}

#: The word ops shows: the supervisor's, except that a paused container says so (the
#: engine counts it as running, a hang rather than a crash, as a SIGSTOPped program
#: stays RUNNING for supervisord; an operator needs to see the freeze).
OPS_STATES = {**STATES, "paused": "PAUSED"}
#: What `docker stop` waits when a container sets no stop timeout of its own.
DOCKER_DEFAULT_STOP_TIMEOUT_S = 10
_NO_SUCH_CONTAINER = re.compile(r"No such (object|container)", re.IGNORECASE)
#: `docker logs --timestamps`: RFC 3339 with nanoseconds, fixed width (so it sorts as text).
_TIMESTAMPED = re.compile(r"^(\d{4}-\d\d-\d\dT[0-9:.]+(?:Z|[+-]\d\d:\d\d)) ?(.*)$")

Runner = Callable[[Sequence[str], float], CommandResult]


def container_health(state: dict[str, Any]) -> Health:
    """A container's health from its `docker inspect` State.

    Docker's health check result, with the last probe's output as detail (what curl,
    pg_isready or redis-cli said); a container without a health check is healthy while
    it runs. A paused container answers nothing, whatever its last check said.
    """
    status = str(state.get("Status") or "unknown")
    if state.get("Paused"):
        return Health(False, "container paused (frozen): `restart` unpauses it")
    if state.get("Restarting") or status == "restarting":
        return Health(False, f"container restarting (its program exited, exit code "
                             f"{state.get('ExitCode')})")
    if not state.get("Running"):
        exited = f" (exit code {state.get('ExitCode')})" if status == "exited" else ""
        return Health(False, f"container {status}{exited}")
    check = state.get("Health") or {}
    verdict = check.get("Status")
    if not verdict:
        return Health(True, "running (no health check)")
    probes = check.get("Log") or []
    output = " ".join(str(probes[-1].get("Output") or "").split())[:200] if probes else ""
    return Health(verdict == "healthy",
                  f"health check {verdict}" + (f": {output}" if output else ""))


def merge_streams(stdout: str, stderr: str) -> list[str]:
    """Both streams of `docker logs --timestamps`, merged in time order, stamps removed.

    The docker CLI writes the container's stdout and stderr to its own two streams;
    captured apart, their interleaving is lost, and the timestamps give it back.
    """
    def entries(text: str) -> Iterator[tuple[str, str]]:
        stamp = ""
        for line in text.splitlines():
            match = _TIMESTAMPED.match(line)
            if match:
                stamp, line = match[1], match[2]
            yield stamp, line  # a line without a stamp stays after the one before it
    merged = heapq.merge(entries(stdout), entries(stderr), key=lambda entry: entry[0])
    return [line for _stamp, line in merged]


class DockerCommandError(Exception):
    """A docker command failed; the message has the command and its output."""


class DockerTarget(Target):
    name = "docker"

    def __init__(self, topology: Topology, runner: Runner = run_command,
                 send_signal: Callable[[int, int], None] = os.kill,
                 proc: Path = procfs.PROC) -> None:
        super().__init__(topology)
        self.layout: DockerLayout = layout_for(topology)
        self._runner = runner
        self._send_signal = send_signal
        self._proc = proc

    # --- lifecycle (infra.targets.docker_lifecycle) -----------------------------------
    def deploy(self, progress: ProgressSink, publish_monitoring: bool = False) -> Deployed:
        # Unhealthy after the deploy is an error there (DockerTargetError), and only
        # nginx is reachable from this machine: no status table to show here.
        docker_lifecycle.deploy_docker(self.topology, progress,
                                       publish_monitoring=publish_monitoring)
        return Deployed(summary=(), status=None, healthy=True)

    def status(self) -> dict[str, Any]:
        return docker_lifecycle.status_docker(self.topology)

    def destroy(self, progress: ProgressSink) -> list[str]:
        docker_lifecycle.destroy_docker(self.topology, progress)
        return []

    # --- plumbing -----------------------------------------------------------------
    def docker(self, *args: str, timeout_s: float = 60) -> CommandResult:
        return self._runner([DOCKER, *args], timeout_s)

    def _checked(self, *args: str, timeout_s: float = 60) -> CommandResult:
        result = self.docker(*args, timeout_s=timeout_s)
        if not result.ok:
            why = "timed out" if result.timed_out else f"exit {result.exit_code}"
            raise DockerCommandError(f"`docker {' '.join(args)}` failed ({why}): "
                                    f"{(result.stderr or result.stdout).strip()}")
        return result

    def container(self, service: Service) -> str:
        return self.layout.container(service.host, service.name)

    def _inspect_state(self, service: Service) -> dict | None:
        result = self.docker("inspect", "--format", "{{json .State}}", self.container(service),
                             timeout_s=15)
        if not result.ok:
            return None
        try:
            return json.loads(result.stdout)
        except json.JSONDecodeError:
            return None

    def _visible(self, pid: int) -> bool:
        return (self._proc / str(pid)).is_dir()

    # --- services -------------------------------------------------------------------
    def state(self, service: Service) -> ServiceState:
        raw = self._inspect_state(service)
        if raw is None:
            return ServiceState(host=service.host, service=service.name, state="UNKNOWN",
                                pid=None)
        pid = int(raw.get("Pid") or 0) or None
        state = STATES.get(str(raw.get("Status")), str(raw.get("Status", "UNKNOWN")).upper())
        paused: tuple[int, ...] = ()
        if pid and raw.get("Running"):
            pids = self._top(service)
            paused = tuple(pids) if raw.get("Paused") else tuple(
                procfs.stopped(pids, self._proc))
        return ServiceState(host=service.host, service=service.name, state=state, pid=pid,
                            paused_pids=paused)

    def start(self, service: Service) -> None:
        raw = self._inspect_state(service) or {}
        if raw.get("Paused"):
            self._checked("unpause", self.container(service))
            return
        if raw.get("Running"):
            return
        self._checked("start", self.container(service), timeout_s=120)

    def stop(self, service: Service) -> None:
        self._checked("stop", "--time", str(STOP_TIMEOUT_S), self.container(service),
                      timeout_s=STOP_TIMEOUT_S + 30)

    def _top(self, service: Service) -> list[int]:
        # `docker top` lists the container's processes by their pids on the Docker host.
        result = self.docker("top", self.container(service), "-eo", "pid", timeout_s=15)
        if not result.ok:
            return []
        return [int(tok) for tok in result.stdout.split() if tok.isdigit()]

    def processes(self, service: Service) -> list[int]:
        raw = self._inspect_state(service) or {}
        if not raw.get("Running"):
            return []
        main = int(raw.get("Pid") or 0)
        others = [p for p in self._top(service) if p != main]
        return ([main] if main else []) + others

    def kill(self, service: Service, sig: int = signal.SIGKILL) -> list[int]:
        main = self.processes(service)[:1]
        if main and self._visible(main[0]):
            self.signal_pids(main, sig)
            return main
        # The engine cannot see the container's processes: Docker signals it, and
        # counts it as a manual stop (no automatic restart).
        self._checked("kill", "--signal", signal.Signals(sig).name, self.container(service))
        return main

    def pause(self, service: Service) -> list[int]:
        pids = self.processes(service)
        self._checked("pause", self.container(service))
        return pids

    def resume(self, service: Service, pids: Sequence[int] = ()) -> list[int]:
        raw = self._inspect_state(service) or {}
        if raw.get("Paused"):
            self._checked("unpause", self.container(service))
        targets = list(dict.fromkeys([*pids, *procfs.stopped(self.processes(service),
                                                             self._proc)]))
        self.signal_pids(targets, signal.SIGCONT)
        return targets

    def send_signal(self, pid: int, sig: int) -> None:
        self._send_signal(pid, sig)

    @contextlib.contextmanager
    def endpoint(self, service: Service) -> Iterator[tuple[str, int]]:
        """A loopback port relayed into the service's container (only nginx and, with
        publish_monitoring, Prometheus are published; see infra.targets.port_forward)."""
        command = relay_command([DOCKER, "exec", "-i", self.container(service)], service.port)
        with PortForward(lambda: command) as address:
            yield address

    def notification_log(self) -> Path | None:
        """The pager's log in its volume, when the engine's data is on this machine."""
        from infra.paths import NOTIFICATION_LOG

        try:
            host = self.topology.one("alertmanager").host
        except KeyError:
            return None
        result = self.docker("volume", "inspect", "--format", "{{.Mountpoint}}",
                             self.layout.volume(host, "notification_log"), timeout_s=15)
        if not result.ok or not result.stdout.strip():
            return None
        directory = Path(result.stdout.strip())
        # An engine elsewhere (a VM, a remote host): its paths are not ours to read.
        return directory / NOTIFICATION_LOG.name if directory.is_dir() else None

    # --- operations (python -m infra.ops) ------------------------------------------
    def _failure(self, result: CommandResult, args: Sequence[str], name: str,
                 kind: type[ServiceError] = ServiceError) -> ServiceError:
        """The error of a failed docker command on container `name`, in words."""
        text = (result.stderr or result.stdout).strip()
        if _NO_SUCH_CONTAINER.search(text):
            return ServiceAbsent(f"no container {name} on this Docker engine (is the "
                                 "stack deployed? invoke deploy --target docker)")
        why = "timed out" if result.timed_out else f"exit {result.exit_code}"
        return kind(f"`docker {' '.join(args)}` failed ({why}): {text}")

    def _inspect(self, service: Service, template: str) -> Any:
        """`docker inspect --format <template>` of the service's container, parsed."""
        name = self.container(service)
        args = ("inspect", "--format", template, name)
        result = self.docker(*args, timeout_s=15)
        if not result.ok:
            raise self._failure(result, args, name)
        try:
            return json.loads(result.stdout)
        except json.JSONDecodeError:
            raise ServiceError(f"`docker {' '.join(args)}` answered no JSON: "
                               f"{result.stdout.strip()[:200]}") from None

    def health(self, service: Service) -> Health:
        try:
            state = self._inspect(service, "{{json .State}}")
        except ServiceError as exc:
            return Health(False, str(exc))
        return container_health(state)

    def alive(self, service: Service) -> Health:
        if service.name != "app":
            return self.health(service)
        # The app's health check fails on a 503, which is what its health view answers
        # while PostgreSQL is slow: alive, and a restart would cure nothing (see
        # infra.health.alive). So ask the app itself, inside its container (only nginx
        # is reachable from here), where its health check asks: any HTTP answer of the
        # workers counts, and the master's metrics listener must answer too.
        name = self.container(service)
        url = f"http://127.0.0.1:{service.port}{self.topology.workload.health_path}"
        args = ("exec", name, "curl", "-sS", "-o", "/dev/null", "--max-time", "2",
                "-w", "%{http_code}", url)  # no -f: an HTTP error status is an answer
        answer = self.docker(*args, timeout_s=15)
        if not answer.ok:
            failure = self._failure(answer, args, name)
            if isinstance(failure, ServiceAbsent):
                return Health(False, str(failure))
            return Health(False, f"{url}: {(answer.stderr or answer.stdout).strip()}")
        detail = f"HTTP {answer.stdout.strip()}"
        if service.metrics_port == service.port or not service.kind.metrics_path:
            return Health(True, detail)
        metrics_url = f"http://127.0.0.1:{service.metrics_port}{service.kind.metrics_path}"
        metrics = self.docker("exec", name, "curl", "-fsS", "-o", "/dev/null", "--max-time",
                              "2", metrics_url, timeout_s=15)
        if not metrics.ok:
            return Health(False, f"{detail}; metrics on 127.0.0.1:{service.metrics_port}: "
                                 f"{(metrics.stderr or metrics.stdout).strip()}")
        return Health(True, f"{detail}; metrics HTTP 200")

    def state_word(self, service: Service) -> str:
        try:
            state = self._inspect(service, "{{json .State}}")
        except ServiceAbsent:
            return ABSENT
        except ServiceError:
            return "UNREACHABLE"  # the engine did not answer (the local target's word)
        status = str(state.get("Status") or "unknown")
        return OPS_STATES.get(status, status.upper())

    def logs(self, service: Service, lines: int) -> ServiceLog:
        name = self.container(service)
        args = ("logs", "--timestamps", "--tail", str(lines), name)
        result = self.docker(*args, timeout_s=60)
        if not result.ok:
            raise self._failure(result, args, name)
        return ServiceLog(source=f"docker logs {name}",
                          lines=merge_streams(result.stdout, result.stderr)[-lines:])

    def restart(self, service: Service) -> str:
        name = self.container(service)
        # The container's own stop timeout (its program's stopwaitsecs; the app's covers
        # its request timeout), stated so that our bound on the command exceeds it.
        configured = self._inspect(service, "{{json .Config.StopTimeout}}")
        stop_s = configured if isinstance(configured, int) else DOCKER_DEFAULT_STOP_TIMEOUT_S
        args = ("restart", "--time", str(stop_s), name)
        result = self.docker(*args, timeout_s=stop_s + 60)
        if not result.ok:
            raise self._failure(result, args, name, RestartFailed)
        return f"docker restart --time {stop_s} {name}"

    def address(self, service: Service) -> str:
        # The name other containers use: the host's alias on the stack network.
        return f"{service.host}:{service.port}"

    # --- hosts ----------------------------------------------------------------------
    def exec_container(self, host: str, user: str | None) -> str:
        """The container `run` uses on a host (see the module docstring)."""
        services = self.topology.host(host).services
        for svc in services:
            if user and svc.kind.user == user:
                return self.container(svc)
        return self.container(services[0])

    def run(self, host: str, argv: Sequence[str], timeout_s: float,
            user: str | None = None, env: dict[str, str] | None = None) -> CommandResult:
        args = ["exec"]
        if user:
            # The images have the local target's cp-* users (infra.docker.images).
            args += ["-u", "0" if user == "root" else user]
        for key, value in sorted((env or {}).items()):
            args += ["-e", f"{key}={value}"]
        args += [self.exec_container(host, user), *argv]
        return self.docker(*args, timeout_s=timeout_s)

    # --- network --------------------------------------------------------------------
    def _netns(self, host: HostLayout, script: str, timeout_s: float = 60) -> CommandResult:
        """Run a shell script with iptables in the host's network namespace."""
        return self.docker("run", "--rm", "--network", f"container:{host.sandbox}",
                           "--cap-add", "NET_ADMIN", "--cap-add", "NET_RAW",
                           "--label", f"civicpulse.stack={self.layout.stack}",
                           "--label", "civicpulse.role=gameday-netns",
                           image_name(self.topology, "nettools"), "sh", "-c", script,
                           timeout_s=timeout_s)

    def _client_ips(self, users: Sequence[str]) -> list[str]:
        hosts = [s.host for s in self.topology.services if s.kind.user in users]
        return [self.layout.hosts[h].ip for h in dict.fromkeys(hosts)]

    def rules_for(self, fault: NetworkFault) -> tuple[HostLayout, list[str]]:
        """The destination host and the iptables rules (one per client host) of a fault."""
        if fault.kind not in ("drop", "loss"):
            raise DockerCommandError(f"network fault {fault.kind!r} is not implemented on the "
                                    "docker target (only drop and loss)")
        host = self.layout.host_of_address(fault.daddr)
        if host is None:
            raise DockerCommandError(f"no host of stack {self.layout.stack} has address "
                                    f"{fault.daddr}")
        match = ["-p", "tcp"]
        if fault.dport is not None:
            match += ["--dport", str(fault.dport)]
        if fault.kind == "loss":
            match += ["-m", "statistic", "--mode", "random", "--probability",
                      f"{(fault.percent or 0) / 100:.2f}"]
        if fault.comment:
            match += ["-m", "comment", "--comment", fault.comment[:200]]
        sources = self._client_ips(fault.from_users) if fault.from_users else [None]
        rules = [shlex.join(["iptables", "-w", "-A", CHAIN, *(["-s", ip] if ip else []),
                             *match, "-j", "DROP"]) for ip in sources]
        return host, rules

    def apply_network_fault(self, fault: NetworkFault) -> None:
        host, rules = self.rules_for(fault)
        script = "; ".join([
            f"iptables -w -N {CHAIN} 2>/dev/null || true",
            f"iptables -w -C INPUT -j {CHAIN} 2>/dev/null || iptables -w -I INPUT 1 -j {CHAIN}",
        ]) + "; " + " && ".join(rules)
        result = self._netns(host, script)
        if not result.ok:
            raise DockerCommandError(f"could not add the fault rules in {host.name}'s network "
                                    f"namespace: {(result.stderr or result.stdout).strip()}")

    def remove_network_faults(self) -> None:
        script = (f"iptables -w -D INPUT -j {CHAIN} 2>/dev/null; iptables -w -F {CHAIN} "
                  f"2>/dev/null; iptables -w -X {CHAIN} 2>/dev/null; true")
        problems = []
        for host in self.layout.hosts.values():
            result = self._netns(host, script)
            if not result.ok:
                problems.append(f"{host.name}: {(result.stderr or result.stdout).strip()}")
            if not self._connected(host):
                self.connect_host(host.name)
        if problems:
            raise DockerCommandError("could not remove the GameDay rules from: " +
                                    "; ".join(problems))

    def network_faults_active(self) -> bool:
        for host in self.layout.hosts.values():
            if not self._connected(host):
                return True
            result = self._netns(host, f"iptables -w -S {CHAIN} 2>/dev/null | grep -q -- '-A '")
            if result.ok:
                return True
        return False

    def _connected(self, host: HostLayout) -> bool:
        result = self.docker("inspect", "--format", "{{json .NetworkSettings.Networks}}",
                             host.sandbox, timeout_s=15)
        if not result.ok:
            return True  # no sandbox: nothing of ours to reconnect
        try:
            return self.layout.network in (json.loads(result.stdout) or {})
        except json.JSONDecodeError:
            return True

    def disconnect_host(self, host: str) -> None:
        """Pull a whole host (every service on it) off the stack network."""
        self._checked("network", "disconnect", "--force", self.layout.network,
                      self.layout.hosts[host].sandbox)

    def connect_host(self, host: str) -> None:
        """Put a host back on the network with its alias and its address."""
        hl = self.layout.hosts[host]
        self._checked("network", "connect", "--alias", hl.alias, "--ip", hl.ip,
                      self.layout.network, hl.sandbox)
