"""The rollback log: what every fault changed, on disk before it changes it.

`<state_dir>/gameday/rollback-log.json` is the write-ahead log of a GameDay's changes
to the stack (not to be confused with a report's `journal.json`, the record of a run).
A fault calls `record()` (which fsyncs) *before* it touches anything, so a run that is
SIGKILLed, loses power or crashes leaves a file that says exactly what to undo;
`gameday.cleanup.cleanup()` reads it. Entries carry plain data (`undo`: a handler name
and its arguments), never pickled objects, so that a later process
(`invoke gameday --cleanup`) can undo them.

A lock file next to it (`infra.stack_lock`) keeps two engines (or an engine and a
cleanup, or a restore) from working on one stack at the same time.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from infra.stack_lock import StackBusy

ROLLBACK_LOG_NAME = "rollback-log.json"
#: The rollback log's name before it was renamed. A run of an older version that was
#: killed left its log under this name; cleanup and the next run must still undo it.
OLD_ROLLBACK_LOG_NAME = "journal.json"
VERSION = 1

# Entry states: intent (recorded, change maybe made), applied (change made),
# undone (rolled back), failed_undo (rollback raised; cleanup must retry).
INTENT, APPLIED, UNDONE, FAILED_UNDO = "intent", "applied", "undone", "failed_undo"


def gameday_dir(state_dir: Path) -> Path:
    return state_dir / "gameday"


def rollback_log_path(state_dir: Path) -> Path:
    return gameday_dir(state_dir) / ROLLBACK_LOG_NAME


@dataclass
class RollbackEntry:
    id: int
    scenario: str
    fault: str
    description: str
    undo: dict[str, Any]
    state: str
    recorded_at: str
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _write_atomically(path: Path, data: dict[str, Any]) -> None:
    """tmp file + fsync + rename + fsync(dir): the log is either old or new, whole."""
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class RollbackLog:
    def __init__(self, state_dir: Path, run_id: str, stack: str) -> None:
        self.path = rollback_log_path(state_dir)
        self.run_id = run_id
        self.stack = stack
        self.entries: list[RollbackEntry] = []
        self.started_at = _now()

    @classmethod
    def create(cls, state_dir: Path, run_id: str, stack: str) -> RollbackLog:
        log = cls(state_dir, run_id, stack)
        log.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        for leftover in read_rollback_logs(state_dir):
            if leftover.pending():
                raise StackBusy(
                    f"{leftover.path}: a previous GameDay (run {leftover.run_id}) left "
                    f"{len(leftover.pending())} change(s) un-rolled-back; run "
                    "`invoke gameday --cleanup` first")
        log._save()
        return log

    def record(self, scenario: str, fault: str, description: str,
               undo: dict[str, Any]) -> RollbackEntry:
        """Write the intent to disk; call this BEFORE making the change."""
        if "handler" not in undo:
            raise ValueError("undo needs a 'handler' naming a registered undo function")
        entry = RollbackEntry(id=len(self.entries) + 1, scenario=scenario, fault=fault,
                              description=description, undo=dict(undo), state=INTENT,
                              recorded_at=_now())
        self.entries.append(entry)
        self._save()
        return entry

    def update_undo(self, entry: RollbackEntry, **undo: Any) -> None:
        """Add what is only known after the change started (e.g. a pid)."""
        entry.undo.update(undo)
        self._save()

    def mark(self, entry: RollbackEntry, state: str, error: str | None = None) -> None:
        entry.state = state
        entry.error = error
        self._save()

    def pending(self) -> list[RollbackEntry]:
        """Entries not yet undone, newest first (the order to undo them in)."""
        return [e for e in reversed(self.entries) if e.state != UNDONE]

    def finish(self) -> bool:
        """Remove the log if everything was undone; keep it for cleanup otherwise."""
        if self.pending():
            return False
        self.path.unlink(missing_ok=True)
        return True

    def to_dict(self) -> dict[str, Any]:
        return {"version": VERSION, "run_id": self.run_id, "stack": self.stack,
                "pid": os.getpid(), "started_at": self.started_at,
                "entries": [e.to_dict() for e in self.entries]}

    def _save(self) -> None:
        _write_atomically(self.path, self.to_dict())


def read_rollback_logs(state_dir: Path) -> list[RollbackLog]:
    """Every rollback log a run left on this stack: the current name first, then one
    left under the old name by a run of an older version (read where it lies, so that
    `finish()` removes that file)."""
    logs = []
    for path in (rollback_log_path(state_dir), gameday_dir(state_dir) / OLD_ROLLBACK_LOG_NAME):
        if path.is_file():
            logs.append(_read(path, state_dir))
    return logs


def read_rollback_log(state_dir: Path) -> RollbackLog | None:
    """The rollback log a run left (see `read_rollback_logs`), or None."""
    logs = read_rollback_logs(state_dir)
    return logs[0] if logs else None


def _read(path: Path, state_dir: Path) -> RollbackLog:
    data = json.loads(path.read_text(encoding="utf-8"))
    log = RollbackLog(state_dir, data.get("run_id", "unknown"), data.get("stack", ""))
    log.path = path
    log.started_at = data.get("started_at", "")
    log.entries = [RollbackEntry(**e) for e in data.get("entries", [])]
    return log
