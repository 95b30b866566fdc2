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

Not verified end to end: the machine this was written on has no Docker engine.
The unit tests (tests/unit/test_docker_driver.py) check the exact commands issued
with a fake runner; whether each image behaves as assumed is for the first real run.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from infra import procfs
from infra.docker.images import image_name
from infra.docker.layout import DockerLayout, HostLayout, layout_for
from infra.targets import docker_lifecycle
from infra.targets.base import (
    CommandResult,
    Deployed,
    NetworkFault,
    ProgressSink,
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

Runner = Callable[[Sequence[str], float], CommandResult]


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
