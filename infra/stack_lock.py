"""One operation at a time on a stack: an exclusive flock on `<state_dir>/gameday/lock`.

The GameDay engine and its cleanup hold it for a whole run; `invoke restore` holds it
while it replaces the database (a restore under a running GameDay would fight the
fault's rollback). It lives in `infra` because both layers take it; the file keeps its
old place beside the rollback log, so a lock held by an older engine still counts.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

LOCK_NAME = "lock"
#: Set in a GameDay runbook's environment to the engine's pid: a command the runbook
#: runs (e.g. a restore) acts under the engine's lock instead of waiting for it.
HOLDER_ENV = "CP_GAMEDAY_PID"


class StackBusy(Exception):
    """Another GameDay engine, cleanup or restore holds the stack's lock."""


def lock_path(state_dir: Path) -> Path:
    return state_dir / "gameday" / LOCK_NAME


class StackLock:
    """Exclusive, non-blocking flock on `<state_dir>/gameday/lock`."""

    def __init__(self, state_dir: Path) -> None:
        self.path = lock_path(state_dir)
        self._fd: int | None = None
        #: Going on under the lock of the GameDay that runs us (nothing to release).
        self._borrowed = False

    def acquire(self) -> StackLock:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise StackBusy(f"{self.path}: another GameDay, cleanup or restore runs on this "
                            f"stack (pid {holder}); wait for it or stop it first") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return self

    def acquire_unless_held_by_caller(self) -> StackLock:
        """Take the lock, or go on without it when the process holding it is the GameDay
        engine whose runbook runs us (HOLDER_ENV names its pid)."""
        try:
            return self.acquire()
        except StackBusy:
            holder = self.path.read_text(errors="replace").strip()
            if holder and os.environ.get(HOLDER_ENV) == holder:
                self._borrowed = True
                return self
            raise

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
        self._borrowed = False

    def __enter__(self) -> StackLock:
        # `with StackLock(d):` takes it; `with StackLock(d).acquire…():` already has it.
        if self._fd is not None or self._borrowed:
            return self
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
