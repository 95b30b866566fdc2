"""The target interface: everything done to a stack, from its deploy to a GameDay fault.

One `Target` per kind of deployment (`local.py`: supervisord per loopback host,
Ansible, signals, nftables; `docker.py`: containers built by Pulumi, `docker
kill/pause`, iptables in network namespaces), obtained with `infra.targets.target_for`.
It owns the lifecycle (`deploy`, `status`, `destroy`: tasks.py) and the runtime
operations (state, start, stop, signals, commands, network faults: the GameDay engine,
its faults and cleanup). The engine never runs supervisorctl, kill or nft itself; nor
does the ops CLI (`python -m infra.ops`, the runbooks' commands), which asks a target
for a service's health, state word, log and restart.

Lifecycle actions report through a `ProgressSink` and fail with a `TargetError`;
tasks.py shows the one and turns the other into an exit code.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from infra.topology import Service, Topology

if TYPE_CHECKING:
    # Only in annotations: infra.health pulls in the database and HTTP clients, which
    # a user of `infra.targets` that never asks for health need not import.
    from infra.health import Health

#: The state word of a service the stack does not run here (no program, no container).
ABSENT = "ABSENT"


@dataclass(frozen=True)
class CommandResult:
    argv: tuple[str, ...]
    exit_code: int | None
    stdout: str
    stderr: str
    duration_s: float
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out


@dataclass(frozen=True)
class ServiceState:
    host: str
    service: str
    #: The supervisor's word: RUNNING, STARTING, STOPPED, BACKOFF, EXITED, FATAL, …
    state: str
    pid: int | None
    #: Processes of the service stopped by SIGSTOP (a paused or hung service).
    paused_pids: tuple[int, ...] = ()

    @property
    def running(self) -> bool:
        return self.state == "RUNNING"


@dataclass(frozen=True)
class NetworkFault:
    """A packet-level fault between clients (by system user) and a destination.

    drop: every matching packet (a partition; clients time out).
    loss: `percent` of matching packets, at random.
    redirect: new connections go to `redirect_to` instead (a fault proxy in the path).
    """

    kind: Literal["drop", "loss", "redirect"]
    from_users: tuple[str, ...]
    daddr: str
    dport: int | None = None
    percent: int | None = None
    redirect_to: tuple[str, int] | None = None
    comment: str = ""


@dataclass(frozen=True)
class ServiceLog:
    """The end of a service's output (stdout and stderr) and where it was read."""

    #: Where the lines come from, for the operator (a file, a `docker logs` command).
    source: str
    lines: list[str]


class ServiceError(Exception):
    """An operation on one service could not be done; the message says why."""


class ServiceAbsent(ServiceError):
    """The service is not there to act on (no container, no log, no host config):
    the stack is not deployed, or not here."""


class RestartFailed(ServiceError):
    """The restart ran and failed: the service's own log says why."""


class TargetError(Exception):
    """A lifecycle action stopped; the message says why and what to do."""


class UnknownTarget(TargetError):
    """The stack config or `--target` names no kind of target we have."""


class TargetUnfit(TargetError):
    """The stack config cannot run on this target; nothing was changed."""


class PrerequisiteMissing(TargetError):
    """This machine lacks what the target needs (a CLI, an engine); nothing was changed."""


def _ignore(_text: str) -> None:
    return None


@dataclass(frozen=True)
class ProgressSink:
    """Where a lifecycle action reports: `step` is what it does now (a spinner's text,
    replaced by the next step), `line` is output to keep (a tool's log, a result)."""

    step: Callable[[str], None] = _ignore
    line: Callable[[str], None] = _ignore


@dataclass(frozen=True)
class Deployed:
    """What a deploy reports once it is done."""

    #: Lines for the operator (timings, where the app answers).
    summary: tuple[str, ...]
    #: The stack's status (the shape of `Target.status`) when the deploy probed it.
    status: dict[str, Any] | None
    healthy: bool


class Target(ABC):
    name: str = "abstract"

    def __init__(self, topology: Topology) -> None:
        self.topology = topology

    # --- lifecycle --------------------------------------------------------------
    @abstractmethod
    def deploy(self, progress: ProgressSink, publish_monitoring: bool = False) -> Deployed:
        """Stand the stack up and wait until it is healthy (TargetError if it cannot)."""

    @abstractmethod
    def status(self) -> dict[str, Any]:
        """{"stack", "services": [{host, service, address, state, healthy, detail, …}],
        "endpoints": {name: url}}."""

    @abstractmethod
    def destroy(self, progress: ProgressSink) -> list[str]:
        """Delete every service and the data of the stack; returns what is left over
        (endpoints still listening, volumes still mounted)."""

    # --- services -------------------------------------------------------------
    @abstractmethod
    def state(self, service: Service) -> ServiceState:
        """What the supervisor says about the service, plus paused processes."""

    @abstractmethod
    def start(self, service: Service) -> None:
        """Start the service (no-op if it runs)."""

    @abstractmethod
    def stop(self, service: Service) -> None:
        """Stop the service gracefully and keep it down."""

    @abstractmethod
    def processes(self, service: Service) -> list[int]:
        """Every process of the service: its main process first, then descendants."""

    def kill(self, service: Service, sig: int = signal.SIGKILL) -> list[int]:
        """Send `sig` to the service's main process; returns the pids signalled."""
        pids = self.processes(service)[:1]
        self.signal_pids(pids, sig)
        return pids

    def pause(self, service: Service) -> list[int]:
        """SIGSTOP every process of the service (a hang, not a crash)."""
        pids = self.processes(service)
        self.signal_pids(pids, signal.SIGSTOP)
        return pids

    def resume(self, service: Service, pids: Sequence[int] = ()) -> list[int]:
        """SIGCONT the given pids and every stopped process of the service."""
        targets = list(dict.fromkeys([*pids, *self.processes(service)]))
        self.signal_pids(targets, signal.SIGCONT)
        return targets

    def signal_pids(self, pids: Sequence[int], sig: int) -> None:
        """Signal processes, ignoring ones that have gone (and never pid 0 or 1)."""
        for pid in pids:
            if pid <= 1:
                continue
            try:
                self.send_signal(pid, sig)
            except ProcessLookupError:
                pass

    def send_signal(self, pid: int, sig: int) -> None:
        """Signal one process, by its pid on this machine."""
        os.kill(pid, sig)

    # --- operations (python -m infra.ops) ------------------------------------------
    @abstractmethod
    def health(self, service: Service) -> Health:
        """Is the service ready for its clients? `detail` says what the check saw."""

    def alive(self, service: Service) -> Health:
        """Does the service answer at all (liveness, not readiness)? `restart
        --unhealthy` leaves alive services alone. Here: readiness is liveness."""
        return self.health(service)

    @abstractmethod
    def state_word(self, service: Service) -> str:
        """The word an operator sees for the service: the supervisor's (RUNNING, BACKOFF,
        EXITED, …), ABSENT, or the target's own for a whole host being off."""

    @abstractmethod
    def logs(self, service: Service, lines: int) -> ServiceLog:
        """The last `lines` lines the service wrote (stdout and stderr, in order);
        ServiceAbsent if there is nothing to read them from."""

    @abstractmethod
    def restart(self, service: Service) -> str:
        """Restart the service (or whatever it takes to bring it back); returns what was
        done, in a few words. ServiceAbsent, RestartFailed or ServiceError if it cannot."""

    def address(self, service: Service) -> str:
        """Where the service answers, as the operator names it (host:port)."""
        return service.endpoint

    # --- hosts ------------------------------------------------------------------
    @abstractmethod
    def run(self, host: str, argv: Sequence[str], timeout_s: float,
            user: str | None = None, env: dict[str, str] | None = None) -> CommandResult:
        """Run a command on a host (as `user` if given), bounded by `timeout_s`."""

    # --- network ----------------------------------------------------------------
    @abstractmethod
    def apply_network_fault(self, fault: NetworkFault) -> None:
        """Add a packet-level fault; several may be active at once."""

    @abstractmethod
    def remove_network_faults(self) -> None:
        """Remove every network fault of ours at once (idempotent)."""

    @abstractmethod
    def network_faults_active(self) -> bool:
        """Whether any network fault of ours is in place."""

    # --- alerts -----------------------------------------------------------------
    @contextlib.contextmanager
    def endpoint(self, service: Service) -> Iterator[tuple[str, int]]:
        """Where this machine reaches the service's port, for as long as the context
        lasts: its own address here; a relay where the port is not published."""
        yield service.address, service.port

    def notification_log(self) -> Path | None:
        """The stack's own webhook receiver's log (the lab pager), if the engine can
        read it; None means the engine listens on the webhook address itself."""
        return None

    # --- helpers ----------------------------------------------------------------
    def user_of(self, service_name: str) -> str:
        from infra.catalog import SERVICE_KINDS

        return SERVICE_KINDS[service_name].user


def run_command(argv: Sequence[str], timeout_s: float, env: dict[str, str] | None = None
                ) -> CommandResult:
    """Run a command, bounded in time; never raises for a failing command."""
    start = time.monotonic()
    try:
        proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout_s,
                              env=env, check=False)
    except subprocess.TimeoutExpired as exc:
        return CommandResult(tuple(argv), None, _text(exc.stdout), _text(exc.stderr),
                             time.monotonic() - start, timed_out=True)
    except OSError as exc:
        return CommandResult(tuple(argv), 127, "", str(exc), time.monotonic() - start)
    return CommandResult(tuple(argv), proc.returncode, proc.stdout, proc.stderr,
                         time.monotonic() - start)


def _text(value: str | bytes | None) -> str:
    if value is None:
        return ""
    return value.decode(errors="replace") if isinstance(value, bytes) else value
