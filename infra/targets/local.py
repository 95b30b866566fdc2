"""The local target: each host is a loopback address with its own supervisord.

Services are supervisord programs named after the service; `supervisorctl -c
<state_dir>/hosts/<host>/supervisor/supervisord.conf` controls them. Signals go
straight to the processes (supervisord restarts what dies: autorestart=true). Network
faults are nftables rules in the stack's own table (`inet civicpulse_gameday_<stack>`),
scoped by the client service's system user.

For the ops CLI: health is `infra.health`'s probe (every service is reachable from
here), a service's log is the file supervisord writes its stdout and stderr to, and a
restart is `supervisorctl restart`. A host's supervisord is its init, so a host whose
supervisord is gone is a host that is down (`HOST DOWN`); restarting a service there
boots the host: starting its supervisord starts every program of the host.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from infra import health as probes
from infra import procfs
from infra.health import Health
from infra.paths import host_dir, notification_log_path, supervisor_conf
from infra.supervision import (
    parse_status,
    program_states,
    supervisorctl,
    supervisorctl_argv,
    supervisord_pid,
)
from infra.targets import local_lifecycle, nft
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
from infra.targets.local_lifecycle import runs_on_this_machine
from infra.topology import Service, Topology

RUNUSER = "/usr/sbin/runuser"
SUPERVISORD = "/usr/bin/supervisord"
HOST_DOWN = "HOST DOWN"  # no supervisord: the whole "machine" is off


def log_path(topology: Topology, service: Service) -> Path:
    """Where supervisord writes the program's stdout and stderr."""
    return host_dir(topology, service.host) / "log" / f"{service.name}.log"


def tail_lines(path: Path, lines: int) -> list[str]:
    """The last `lines` lines of a file, reading backwards from its end (logs get big)."""
    if lines <= 0:
        return []
    with open(path, "rb") as fh:
        fh.seek(0, 2)
        pos = fh.tell()
        data = b""
        while pos > 0 and data.count(b"\n") <= lines:
            step = min(64 * 1024, pos)
            pos -= step
            fh.seek(pos)
            data = fh.read(step) + data
    return data.decode("utf-8", errors="replace").splitlines()[-lines:]


class SupervisorError(Exception):
    pass


class LocalTarget(Target):
    name = "local"

    def __init__(self, topology: Topology) -> None:
        super().__init__(topology)
        self._network_faults: list[NetworkFault] = []

    # --- lifecycle (infra.targets.local_lifecycle) ------------------------------------
    def deploy(self, progress: ProgressSink, publish_monitoring: bool = False) -> Deployed:
        # publish_monitoring is the docker target's: here every service already listens
        # on its own loopback address.
        result = local_lifecycle.deploy(self.topology, progress=progress.step)
        timings = result.timings
        summary = (f"Ansible: changed={result.playbook.changed} in {timings['ansible']:.1f}s; "
                   f"ready after {timings['readiness']:.1f}s; total {timings['total']:.1f}s",)
        return Deployed(summary=summary, status=self.status(), healthy=result.healthy)

    def status(self) -> dict[str, Any]:
        return local_lifecycle.status(self.topology)

    def destroy(self, progress: ProgressSink) -> list[str]:
        left = local_lifecycle.destroy(self.topology, progress=progress.line)
        if not left:
            progress.line(f"stack {self.topology.stack} destroyed; nothing of it is listening")
        return left

    # --- runtime -----------------------------------------------------------------------

    def notification_log(self) -> Path | None:
        # The alertmanager role runs the receiver next to Alertmanager; its log is a
        # file the engine can read only when that host is this machine.
        try:
            host = self.topology.host(self.topology.one("alertmanager").host)
        except KeyError:
            return None
        return notification_log_path(self.topology) if runs_on_this_machine(host) else None

    def supervisorctl(self, host: str, *args: str, timeout_s: float = 60) -> CommandResult:
        return run_command(supervisorctl_argv(self.topology, host, *args), timeout_s)

    def state(self, service: Service) -> ServiceState:
        result = self.supervisorctl(service.host, "status", service.name, timeout_s=15)
        state, pid = parse_status(result.stdout, service.name)
        if state == "UNKNOWN" and result.stderr:
            state = "UNREACHABLE"
        paused: tuple[int, ...] = ()
        if pid:
            paused = tuple(procfs.stopped(procfs.descendants(pid)))
        return ServiceState(host=service.host, service=service.name, state=state, pid=pid,
                            paused_pids=paused)

    def start(self, service: Service) -> None:
        if self.state(service).running:
            return
        result = self.supervisorctl(service.host, "start", service.name, timeout_s=120)
        if not result.ok and "already started" not in result.stdout + result.stderr:
            raise SupervisorError(f"{service.host}: supervisorctl start {service.name} "
                                  f"failed: {(result.stdout + result.stderr).strip()}")

    def stop(self, service: Service, settle_s: float = 10.0) -> None:
        # Right after a crash supervisord respawns the program (autorestart). A stop sent
        # while it is EXITED is a no-op ("not running") and the respawn brings it back; a
        # SIGTERM sent before the respawned child has exec'd is lost, and supervisord then
        # waits stopwaitsecs (20 s for the app) before SIGKILL. Measured: AppHostDown
        # fired at 4.6 s, resolved when the respawn came up, fired again at 23 s. So wait
        # out that window (bounded) before asking supervisord to stop.
        deadline = time.monotonic() + settle_s
        while time.monotonic() < deadline:
            current = self.state(service)
            respawning = current.state == "EXITED" or (
                current.state == "STARTING" and current.pid is not None
                and not procfs.execed_away_from_parent(current.pid))
            if not respawning:
                break
            time.sleep(0.05)
        result = self.supervisorctl(service.host, "stop", service.name, timeout_s=120)
        text = result.stdout + result.stderr
        if not result.ok and "not running" not in text:
            raise SupervisorError(f"{service.host}: supervisorctl stop {service.name} failed: "
                                  f"{text.strip()}")

    def processes(self, service: Service) -> list[int]:
        state = self.state(service)
        if not state.pid:
            return []
        return procfs.descendants(state.pid)

    def pause(self, service: Service) -> list[int]:
        # Stop the parent first so it cannot fork new children meanwhile, then sweep
        # the tree a few times for children forked between the listing and the stop.
        paused: list[int] = []
        for _ in range(3):
            fresh = [p for p in self.processes(service) if p not in paused]
            if not fresh:
                break
            self.signal_pids(fresh, 19)  # SIGSTOP
            paused.extend(fresh)
        return paused

    # --- operations (python -m infra.ops) ------------------------------------------
    def health(self, service: Service) -> Health:
        return probes.probe(self.topology, service)

    def alive(self, service: Service) -> Health:
        return probes.alive(self.topology, service)

    def state_word(self, service: Service) -> str:
        if supervisord_pid(self.topology, service.host) is None:
            return HOST_DOWN
        return program_states(self.topology, service.host).get(service.name, ABSENT)

    def logs(self, service: Service, lines: int) -> ServiceLog:
        path = log_path(self.topology, service)
        if not path.is_file():
            raise ServiceAbsent(f"no log at {path} (is the stack deployed?)")
        return ServiceLog(source=str(path), lines=tail_lines(path, lines))

    def restart(self, service: Service) -> str:
        if supervisord_pid(self.topology, service.host) is None:
            self.boot_host(service.host)
            return (f"host {service.host} was down: started its supervisord "
                    "(and all its programs)")
        result = supervisorctl(self.topology, service.host, "restart", service.name,
                               timeout=120)
        text = (result.stdout + result.stderr).strip().replace("\n", "; ")
        # The exit status alone is not the verdict: output that says `started` (after an
        # error for the stop half of a program that was not running) brought it up.
        if result.returncode != 0 and "started" not in text:
            raise RestartFailed(f"supervisorctl restart {service.name} on {service.host} "
                                f"failed: {text}")
        return f"supervisorctl restart: {text}"

    def boot_host(self, host: str, timeout_s: float = 30) -> None:
        """Start the host's supervisord, which starts every program of the host."""
        conf = supervisor_conf(self.topology, host)
        if not conf.is_file():
            raise ServiceAbsent(f"host {host} has no supervisord config at {conf}: the stack "
                                "is not deployed here (run `invoke deploy`)")
        subprocess.run([SUPERVISORD, "-c", str(conf)], capture_output=True, text=True,
                       timeout=timeout_s, check=False)
        deadline = time.monotonic() + timeout_s
        while supervisorctl(self.topology, host, "pid", timeout=10).returncode != 0:
            if time.monotonic() >= deadline:
                raise ServiceError(f"supervisord of host {host} did not come up within "
                                   f"{timeout_s:g}s; see "
                                   f"{host_dir(self.topology, host) / 'log' / 'supervisord.log'}")
            time.sleep(0.3)

    # --- hosts ------------------------------------------------------------------------
    def run(self, host: str, argv: Sequence[str], timeout_s: float,
            user: str | None = None, env: dict[str, str] | None = None) -> CommandResult:
        # Every host is this machine; the host only decides the environment.
        self.topology.host(host)
        full = [RUNUSER, "-u", user, "--", *argv] if user and user != "root" else list(argv)
        return run_command(full, timeout_s, env)

    def apply_network_fault(self, fault: NetworkFault) -> None:
        faults = [*self._network_faults, fault]
        nft.apply(faults, nft.table_for(self.topology.stack))
        self._network_faults = faults

    def remove_network_faults(self) -> None:
        self._network_faults = []
        nft.delete_table(nft.table_for(self.topology.stack))

    def network_faults_active(self) -> bool:
        return nft.table_exists(nft.table_for(self.topology.stack))
