"""Disk full on a service's data volume: a balloon file takes the free space.

Decision: the fault fills a *dedicated, size-limited volume* and refuses anything
else. On the local target every host shares this machine's root filesystem (hundreds
of GB); filling it would take minutes and hurt everything on the machine, the engine
and its journal included. So the database's data directory must live on its own
small volume, which deploy provides. Options, with their trade-offs:

- loop-mounted ext4 image (chosen for PostgreSQL, `sizing.postgresql.data_volume_mb`;
  the postgresql role mounts it at `<host>/postgresql/volume`, data in `volume/data`):
  persistent across restarts of the service, real ext4 semantics (ENOSPC, reserved
  blocks); needs root, a loop device and a remount after a reboot (deploy does it).
- tmpfs with `size=`: no image file and instant, but held in RAM and lost on reboot,
  so only for throwaway stacks.

The balloon is `fallocate`d (instant on ext4 and tmpfs) at
`<volume>/.civicpulse-gameday-balloon`; the rollback log records the path first and the
undo deletes it. It takes the space *unprivileged* users may still use (`f_bavail`)
minus `leave_mb`: the non-root service then sees ENOSPC exactly as when it fills the
disk itself, and ext4's reserved blocks stay as the small remainder only root can use
(the runbook's tools, a rollback). `leave_mb` > 0 is a "nearly full" variant.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from gameday.faults.base import Fault, UndoContext, undo_handler
from infra.paths import host_dir

BALLOON = ".civicpulse-gameday-balloon"


@undo_handler("remove_file")
def _remove_file(ctx: UndoContext, undo: dict[str, Any]) -> str:
    path = Path(undo["path"])
    if path.name != BALLOON:
        raise ValueError(f"refusing to delete {path}: not a GameDay balloon file")
    existed = path.exists()
    path.unlink(missing_ok=True)
    return f"{'removed' if existed else 'already gone:'} {path}"


def mount_point(path: Path) -> Path:
    path = path.resolve()
    while not os.path.ismount(path) and path != path.parent:
        path = path.parent
    return path


def balloon_bytes(st: os.statvfs_result, leave_mb: int) -> int:
    """How big the balloon must be to leave `leave_mb` MiB for unprivileged writers."""
    return max(0, st.f_bavail * st.f_frsize - leave_mb * 2**20)


def volume_problems(path: Path, max_volume_gb: float) -> list[str]:
    if not path.exists():
        return [f"{path} does not exist: disk_full fills the size-limited volume that "
                "holds this directory. Is the stack deployed, with the volume configured "
                "(for PostgreSQL: sizing.postgresql.data_volume_mb in the stack config)?"]
    mount = mount_point(path)
    st = os.statvfs(mount)
    size_gb = st.f_blocks * st.f_frsize / 2**30
    if mount == Path("/") or size_gb > max_volume_gb:
        return [f"{path} is on {mount} ({size_gb:.0f} GiB), not on a dedicated size-limited "
                f"volume (≤ {max_volume_gb:g} GiB): deploy must mount one there (e.g. a "
                "loop-mounted ext4 image) for this scenario; nothing was filled"]
    return []


class DiskFull(Fault):
    kind = "disk_full"

    @property
    def path(self) -> Path:
        raw = Path(self.params.path)
        return raw if raw.is_absolute() else host_dir(self.ctx.topology, self.service.host) / raw

    def plan(self) -> list[str]:
        return [f"fallocate {mount_point(self.path) / BALLOON} to leave "
                f"{self.params.leave_mb} MiB free (for unprivileged users) on the volume "
                f"of {self.path}, {self.spec.duration_s:g}s"]

    def preflight(self) -> list[str]:
        return volume_problems(self.path, self.params.max_volume_gb)

    async def inject(self) -> None:
        self.require_preflight()
        balloon = mount_point(self.path) / BALLOON
        entry = self.record_change(f"balloon file {balloon}",
                                   {"handler": "remove_file", "path": str(balloon)})
        size = await asyncio.to_thread(self._fill, balloon)
        self.applied(entry)
        self.ctx.log(f"disk filled: {size / 2**20:.0f} MiB balloon at {balloon}")

    def _fill(self, balloon: Path) -> int:
        size = balloon_bytes(os.statvfs(balloon.parent), self.params.leave_mb)
        fd = os.open(balloon, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            if size:
                try:
                    os.posix_fallocate(fd, 0, size)
                except OSError:
                    # Metadata takes a little of what statvfs called free; take what fits.
                    for shrink in (2**20, 2**22, 2**24, 2**26):
                        try:
                            os.posix_fallocate(fd, 0, max(0, size - shrink))
                            break
                        except OSError:
                            continue
        finally:
            os.close(fd)
        return balloon.stat().st_size
