"""The target-driver interface: everything the engine and the faults do to a stack.

The engine never runs supervisorctl, kill or nft itself; it asks a `Target`. The
local target (`local.py`: supervisord per loopback host, signals, nftables) is the
first implementation; a Docker one (containers, `docker kill/pause`, network
namespaces) implements the same methods.
"""

from __future__ import annotations

import signal
import subprocess
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from infra.topology import Service, Topology


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


class Target(ABC):
    name: str = "abstract"

    def __init__(self, topology: Topology) -> None:
        self.topology = topology

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

    @abstractmethod
    def signal_pids(self, pids: Sequence[int], sig: int) -> None:
        """Signal processes, ignoring ones that have gone."""

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
