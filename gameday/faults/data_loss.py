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
from infra.restore import checked_command, data_present, exists_on, put_back_data_directory
from infra.topology import Service

LOST_SUFFIX = ".gameday-lost"


@undo_handler("bring_back_data_directory")
def _bring_back(ctx: UndoContext, undo: dict[str, Any]) -> str:
    svc = service_of(ctx.topology, undo["host"], "postgresql")
    data, lost = Path(undo["data"]), Path(undo["lost"])
    if not lost.name.endswith(LOST_SUFFIX):
        raise ValueError(f"refusing to touch {lost}: not a GameDay's moved data directory")
    # A run killed between freezing the server and killing it left it frozen.
    ctx.target.resume(svc)
    if not exists_on(ctx.target, svc.host, lost):
        if data_present(ctx.topology, ctx.target):
            return f"nothing moved aside any more; {data} holds a cluster"
        raise RuntimeError(f"neither {data} nor {lost} holds the cluster")
    deadline = time.monotonic() + float(undo.get("grace_s", 60))
    while time.monotonic() < deadline:
        if data_present(ctx.topology, ctx.target) and ctx.target.health(svc).ok:
            checked_command(ctx.target, svc.host, ["rm", "-rf", "--one-file-system", str(lost)],
                            "delete the moved copy")
            return f"PostgreSQL runs on a restored cluster; deleted the moved copy {lost}"
        if not exists_on(ctx.target, svc.host, data):
            break  # no restore even began: no point waiting for one
        time.sleep(1.0)
    put_back_data_directory(ctx.topology, ctx.target, svc, data, lost)
    return f"no restored cluster: moved {lost} back to {data} and started PostgreSQL"


class DataDirectoryLost(Fault):
    kind = "data_directory_lost"
    instantaneous = True
    target_service = "postgresql"
    needs_backups = True

    @property
    def data(self) -> Path:
        return postgresql_data_dir(self.ctx.topology, self.service.host)

    def plan(self) -> list[str]:
        how = ("freeze postgresql@{h}, move {d} to {d}{s}, SIGKILL it"
               if self.params.signal == "KILL" else "stop postgresql@{h}, move {d} to {d}{s}")
        return [how.format(h=self.service.host, d=self.data, s=LOST_SUFFIX)
                + "; it stays down (no cluster) until a restore"]

    async def inject(self) -> None:
        self.require_preflight()
        svc, data = self.service, self.data
        lost = data.with_name(data.name + LOST_SUFFIX)
        if await asyncio.to_thread(exists_on, self.ctx.target, svc.host, lost):
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

    def _move_aside(self, svc: Service, data: Path, lost: Path) -> None:
        checked_command(self.ctx.target, svc.host, ["mv", str(data), str(lost)],
                        "move the data directory aside")

    def _take_down(self, svc: Service, data: Path, lost: Path) -> None:
        if self.params.signal == "TERM":
            self.ctx.target.stop(svc)
            self._move_aside(svc, data, lost)
            return
        # Frozen first, so that nothing more reaches the disk or the archive: killed
        # first, supervisord would respawn it, crash recovery and the stop after it
        # would write and archive the WAL's tail, and the loss would lose nothing.
        pids = self.ctx.target.pause(svc)
        self._move_aside(svc, data, lost)
        self.ctx.target.signal_pids(pids, signal.SIGKILL)
        self.ctx.target.stop(svc)

