"""The database's data volume is lost: PostgreSQL stops and its cluster is gone.

Destroying data is the one thing a fault must not really do, so it moves the data
directory aside (a rename on the same volume: instant, nothing copied) after
stopping the server; the database host then has no cluster, exactly as after losing
the volume, and only a restore from the backup repository brings the data back.

The rollback decides by what it finds:
- PostgreSQL healthy on a cluster in the data directory: the runbook restored it;
  the moved copy is deleted (nothing left behind; what it held beyond the archive
  is the measured cost of the loss, reported by reconciliation);
- otherwise (no restore, or it failed): PostgreSQL is stopped, whatever is in the
  data directory is moved to `<data>.failed-restore`, the original goes back, and
  PostgreSQL is started on it: the stack is as before the fault.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

from gameday.faults.base import Fault, UndoContext, service_of, undo_handler
from infra.paths import postgresql_data_dir
from infra.restore import wake_checkpointer_of
from infra.topology import Service

LOST_SUFFIX = ".gameday-lost"
FAILED_SUFFIX = ".failed-restore"


def _exists(ctx: UndoContext, host: str, path: Path, test: str = "-e") -> bool:
    return ctx.target.run(host, ["test", test, str(path)], timeout_s=10).ok


def _checked(ctx: UndoContext, host: str, argv: list[str]) -> None:
    result = ctx.target.run(host, argv, timeout_s=600)
    if not result.ok:
        raise RuntimeError(f"{host}: {' '.join(argv)} failed: "
                           f"{(result.stderr or result.stdout).strip() or 'timed out'}")


@undo_handler("bring_back_data_directory")
def _bring_back(ctx: UndoContext, undo: dict[str, Any]) -> str:
    svc = service_of(ctx.topology, undo["host"], "postgresql")
    data, lost = Path(undo["data"]), Path(undo["lost"])
    if not lost.name.endswith(LOST_SUFFIX):
        raise ValueError(f"refusing to touch {lost}: not a GameDay's moved data directory")
    # A run killed between freezing the server and killing it left it frozen.
    ctx.target.resume(svc)
    if not _exists(ctx, svc.host, lost):
        if _exists(ctx, svc.host, data / "PG_VERSION", "-f"):
            return f"nothing moved aside any more; {data} holds a cluster"
        raise RuntimeError(f"neither {data} nor {lost} holds the cluster")
    deadline = time.monotonic() + float(undo.get("grace_s", 60))
    while time.monotonic() < deadline:
        if _exists(ctx, svc.host, data / "PG_VERSION", "-f") and ctx.target.health(svc).ok:
            _checked(ctx, svc.host, ["rm", "-rf", "--one-file-system", str(lost)])
            return f"PostgreSQL runs on a restored cluster; deleted the moved copy {lost}"
        if not _exists(ctx, svc.host, data):
            break  # no restore even began: no point waiting for one
        time.sleep(1.0)
    ctx.target.stop(svc)
    if _exists(ctx, svc.host, data):
        failed = data.with_name(data.name + FAILED_SUFFIX)
        _checked(ctx, svc.host, ["rm", "-rf", "--one-file-system", str(failed)])
        _checked(ctx, svc.host, ["mv", str(data), str(failed)])
    _checked(ctx, svc.host, ["mv", str(lost), str(data)])
    ctx.target.start(svc)
    _wait_accepting(ctx, svc)
    wake_checkpointer_of(ctx.topology)
    return f"no restored cluster: moved {lost} back to {data} and started PostgreSQL"


def _wait_accepting(ctx: UndoContext, svc: Service, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not ctx.target.health(svc).ok:
        if time.monotonic() > deadline:
            raise RuntimeError(f"postgresql@{svc.host} not healthy {timeout_s:g}s after "
                               "its data directory was put back")
        time.sleep(0.5)


class DataDirectoryLost(Fault):
    kind = "data_directory_lost"
    instantaneous = True
    target_service = "postgresql"

    @property
    def data(self) -> Path:
        return postgresql_data_dir(self.ctx.topology, self.service.host)

    def plan(self) -> list[str]:
        how = ("freeze postgresql@{h}, move {d} to {d}{s}, SIGKILL it"
               if self.params.signal == "KILL" else "stop postgresql@{h}, move {d} to {d}{s}")
        return [how.format(h=self.service.host, d=self.data, s=LOST_SUFFIX)
                + "; it stays down (no cluster) until a restore"]

    def preflight(self) -> list[str]:
        problems = super().preflight()
        if not self.ctx.topology.has_backups:
            problems.append("the stack keeps no backups (no pgbackrest host): a lost data "
                            "directory could only be undone, never restored")
        return problems

    async def inject(self) -> None:
        self.require_preflight()
        svc, data = self.service, self.data
        lost = data.with_name(data.name + LOST_SUFFIX)
        undo_ctx = self._undo_ctx()
        if await asyncio.to_thread(_exists, undo_ctx, svc.host, lost):
            # mv would move the cluster *into* it: an earlier run's copy is in the way.
            raise RuntimeError(f"{lost} exists (left by an earlier run?): run "
                               "`invoke gameday --cleanup` or remove it; nothing was changed")
        entry = self.record_change(
            f"postgresql@{svc.host} stopped (SIG{self.params.signal}), {data} moved to {lost}",
            {"handler": "bring_back_data_directory", "host": svc.host, "data": str(data),
             "lost": str(lost), "grace_s": self.params.restored_grace_s})
        await asyncio.to_thread(self._take_down, svc, data, lost)
        self.applied(entry)
        self.ctx.log(f"postgresql@{svc.host}: data directory gone (moved to {lost})")

    def _take_down(self, svc: Service, data: Path, lost: Path) -> None:
        if self.params.signal == "TERM":
            self.ctx.target.stop(svc)
            _checked(self._undo_ctx(), svc.host, ["mv", str(data), str(lost)])
            return
        # Frozen first, so that nothing more reaches the disk or the archive: killed
        # first, supervisord would respawn it, crash recovery and the stop after it
        # would write and archive the WAL's tail, and the loss would lose nothing.
        pids = self.ctx.target.pause(svc)
        _checked(self._undo_ctx(), svc.host, ["mv", str(data), str(lost)])
        self.ctx.target.signal_pids(pids, signal.SIGKILL)
        self.ctx.target.stop(svc)

    def _undo_ctx(self) -> UndoContext:
        return UndoContext(self.ctx.topology, self.ctx.target)
