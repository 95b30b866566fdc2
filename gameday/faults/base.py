"""What every fault shares: target resolution, log-first changes, rollback.

The contract that makes rollback guaranteed:
1. Before changing anything a fault calls `self.record_change(description, undo)`, which
   writes the undo instruction to `<state_dir>/gameday/rollback-log.json` and fsyncs it.
2. An undo instruction is plain data naming a handler registered here with
   `@undo_handler`; handlers are synchronous functions of (UndoContext, data), so the
   engine's rollback and a later `cleanup()` in another process run the same code.
3. `rollback()` is idempotent and undoes this fault's entries newest first.
"""

from __future__ import annotations

import asyncio
import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from gameday.rollback_log import APPLIED, FAILED_UNDO, UNDONE, RollbackEntry, RollbackLog
from gameday.scenario import FaultSpec
from infra.targets.base import Target
from infra.topology import Service, Topology


@dataclass
class UndoContext:
    topology: Topology
    target: Target


T = TypeVar("T")
UndoHandler = Callable[[UndoContext, dict[str, Any]], str]
UNDO_HANDLERS: dict[str, UndoHandler] = {}


def undo_handler(name: str) -> Callable[[UndoHandler], UndoHandler]:
    def register(func: UndoHandler) -> UndoHandler:
        UNDO_HANDLERS[name] = func
        return func
    return register


def run_undo(ctx: UndoContext, undo: dict[str, Any]) -> str:
    handler = UNDO_HANDLERS.get(undo.get("handler", ""))
    if handler is None:
        raise KeyError(f"no undo handler {undo.get('handler')!r} (known: "
                       f"{', '.join(sorted(UNDO_HANDLERS))})")
    return handler(ctx, undo)


def service_of(topology: Topology, host: str, name: str) -> Service:
    for svc in topology.host(host).services:
        if svc.name == name:
            return svc
    raise KeyError(f"host {host!r} of stack {topology.stack!r} runs no {name}")


@undo_handler("none")
def _undo_nothing(ctx: UndoContext, undo: dict[str, Any]) -> str:
    return "nothing to undo on the stack"


@dataclass
class FaultContext:
    topology: Topology
    target: Target
    rollback_log: RollbackLog
    scenario_id: str
    log: Callable[[str], None] = lambda message: None
    #: The running load generator (for load_surge); None outside a run.
    load: Any = None
    run_id: str = "run"
    extra: dict[str, Any] = field(default_factory=dict)


class Fault(ABC):
    kind: ClassVar[str]
    #: One action (a signal) rather than a condition held for duration_s.
    instantaneous: ClassVar[bool] = False
    #: The one service this kind of fault acts on (None: any); preflight refuses others.
    target_service: ClassVar[str | None] = None
    #: Destroys data that only the backup repository can bring back: refused on a
    #: stack without one (the fault could then only be undone, never recovered from).
    needs_backups: ClassVar[bool] = False

    def __init__(self, spec: FaultSpec, ctx: FaultContext) -> None:
        self.spec = spec
        self.ctx = ctx
        self.params: Any = spec.params
        self._entries: list[RollbackEntry] = []

    # --- what it acts on --------------------------------------------------------
    @property
    def services(self) -> list[Service]:
        """The targeted instances of the service."""
        t = self.spec.target
        found = list(self.ctx.topology.instances(t.service))
        if t.host:
            found = [s for s in found if s.host == t.host]
        elif not t.all_instances:
            found = found[:1]
        return found

    @property
    def service(self) -> Service:
        return self.services[0]

    def describe(self) -> str:
        names = ", ".join(f"{s.name}@{s.host}" for s in self.services)
        return f"{self.kind} on {names}"

    def plan(self) -> list[str]:
        """What inject would do, for --dry-run."""
        return [self.describe()]

    def runbook_env(self) -> dict[str, str]:
        """What the runbook needs to know of this fault once injected (e.g. the moment a
        point-in-time restore goes back to, CP_INCIDENT_START); most faults: nothing."""
        return {}

    def preflight(self) -> list[str]:
        """Reasons the fault cannot run on this stack (empty: it can)."""
        if self.target_service is not None and self.service.name != self.target_service:
            return [f"{self.kind} targets {self.target_service}, not {self.service.name}"]
        if self.needs_backups and not self.ctx.topology.has_backups:
            return [f"{self.kind}: the stack keeps no backups (no pgbackrest host), so "
                    "nothing could recover from it; it could only be undone"]
        return []

    def require_preflight(self) -> None:
        """Raise with preflight's reasons, if any (before anything is recorded or changed)."""
        problems = self.preflight()
        if problems:
            raise RuntimeError("; ".join(problems))

    # --- log-first changes ------------------------------------------------------
    def record_change(self, description: str, undo: dict[str, Any]) -> RollbackEntry:
        entry = self.ctx.rollback_log.record(self.ctx.scenario_id, self.kind, description, undo)
        self._entries.append(entry)
        return entry

    def applied(self, entry: RollbackEntry) -> None:
        self.ctx.rollback_log.mark(entry, APPLIED)

    async def change_logged(self, description: str, undo: dict[str, Any],
                            change: Callable[[], T]) -> T:
        """Record the undo, then make the change (blocking code, run in a thread), then
        mark the entry applied. A change that fails halfway leaves its entry recorded,
        so rollback and cleanup still undo whatever it did."""
        entry = self.record_change(description, undo)
        result = await asyncio.to_thread(change)
        self.applied(entry)
        return result

    @abstractmethod
    async def inject(self) -> None:
        """Make the change (logged first)."""

    async def rollback(self) -> list[str]:
        """Undo this fault's rollback log entries, newest first; safe to call twice."""
        done = []
        undo_ctx = UndoContext(self.ctx.topology, self.ctx.target)
        for entry in reversed(self._entries):
            if entry.state == UNDONE:
                continue
            try:
                message = await asyncio.to_thread(run_undo, undo_ctx, entry.undo)
            except Exception as exc:  # noqa: BLE001 - keep undoing the others
                self.ctx.rollback_log.mark(entry, FAILED_UNDO, f"{type(exc).__name__}: {exc}")
                done.append(f"FAILED to undo {entry.description}: {exc}")
                continue
            self.ctx.rollback_log.mark(entry, UNDONE)
            done.append(f"undone: {entry.description} ({message})")
        return done

    @property
    def fully_rolled_back(self) -> bool:
        return all(e.state == UNDONE for e in self._entries)


@undo_handler("kill_marked_processes")
def _kill_marked(ctx: UndoContext, undo: dict[str, Any]) -> str:
    """SIGTERM (then SIGKILL) our helper processes: the recorded pids and anything
    else carrying the marker, never a pid whose command line lacks it."""
    import os
    import signal
    import time

    from infra import procfs

    marker = undo["marker"]
    pids = {p for p in undo.get("pids", []) if marker in procfs.cmdline(p)}
    pids |= set(procfs.pids_with_marker(marker))
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + float(undo.get("grace_s", 8))
    alive = set(pids)
    while alive and time.monotonic() < deadline:
        alive = {p for p in alive if marker in procfs.cmdline(p)
                 and (procfs.read_proc(p) or procfs.ProcInfo(p, 0, "Z", "")).state != "Z"}
        time.sleep(0.1)
    for pid in alive:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return f"stopped {len(pids)} helper process(es) marked {marker}"


def marker_for(ctx: FaultContext, what: str) -> str:
    """A tag our helper processes carry in argv, unique to the stack and the run."""
    return f"civicpulse-gameday-{ctx.topology.stack}-{what}-{ctx.run_id}"


def write_like(path: Path, text: str) -> None:
    """Replace the file's content atomically, keeping its owner and mode."""
    st = path.stat()
    tmp = path.with_name(path.name + ".gameday-tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, st.st_mode & 0o777)
    try:
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chown(tmp, st.st_uid, st.st_gid)
    os.chmod(tmp, st.st_mode & 0o777)
    os.replace(tmp, path)
