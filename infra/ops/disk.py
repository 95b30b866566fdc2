"""Where the stack's disk space went, and freeing what is safe to free.

`--clean` deletes only files we know are disposable:

- rotated supervisor logs (`<host>/log/*.log.1`, `.log.2`, …): supervisord keeps two
  backups of 20 MB per program; the live `.log` is held open and is never touched;
- GameDay balloon files (`.civicpulse-gameday-balloon`) that an interrupted GameDay
  left behind on a volume (the engine's rollback deletes them too);
- with `--truncate-access-log` only, nginx's access log (truncated in place: nginx
  writes with O_APPEND, so it keeps logging; the request history is lost).

It never touches PostgreSQL's data or WAL (deleting WAL corrupts the cluster;
`VACUUM` does not give space back to the filesystem and `VACUUM FULL` needs more
free space first), Prometheus' TSDB (lower `sizing.prometheus.retention` instead) or
anything outside the stack's state directory. When that is not enough, the report
says which directories are big, and the runbook escalates.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from infra.ops.outcome import Outcome
from infra.paths import host_dir
from infra.topology import Topology

BALLOON = ".civicpulse-gameday-balloon"
_ROTATED_LOG = re.compile(r"\.log\.\d+$")
MiB = 2**20


@dataclass(frozen=True)
class Filesystem:
    mount: Path
    size: int
    free: int  # available to unprivileged users: what the services can still write

    @property
    def free_pct(self) -> float:
        return 100.0 * self.free / self.size if self.size else 0.0


def mount_point(path: Path) -> Path:
    path = path.resolve()
    while not os.path.ismount(path) and path != path.parent:
        path = path.parent
    return path


def filesystem(mount: Path) -> Filesystem:
    st = os.statvfs(mount)
    return Filesystem(mount=mount, size=st.f_blocks * st.f_frsize, free=st.f_bavail * st.f_frsize)


def stack_mounts(topology: Topology, depth: int = 4) -> list[Path]:
    """The filesystems holding the stack's state: its root's, and any volume mounted
    inside it (e.g. PostgreSQL's data directory on its own size-limited volume)."""
    root = topology.state_dir
    if not root.exists():
        return []
    mounts = {mount_point(root)}
    base = len(root.parts)
    for current, dirs, _files in os.walk(root):
        here = Path(current)
        if os.path.ismount(here):
            mounts.add(here)
        if len(here.parts) - base >= depth:
            dirs.clear()
    return sorted(mounts)


def usage(path: Path) -> int:
    """Bytes allocated under `path` (like `du`: sparse files count what they use)."""
    total = 0
    for current, _dirs, files in os.walk(path, onerror=lambda _e: None):
        for name in files:
            try:
                total += os.lstat(os.path.join(current, name)).st_blocks * 512
            except OSError:
                continue
    return total


def largest(topology: Topology, top: int = 10) -> list[tuple[Path, int]]:
    """The biggest per-service directories (`hosts/<host>/<dir>`) and balloon files."""
    sizes = []
    for host in topology.hosts:
        hdir = host_dir(topology, host.name)
        if not hdir.is_dir():
            continue
        for child in hdir.iterdir():
            sizes.append((child, usage(child) if child.is_dir() else child.lstat().st_size))
    for mount in stack_mounts(topology):
        balloon = mount / BALLOON
        if balloon.exists():
            sizes.append((balloon, balloon.lstat().st_blocks * 512))
    return sorted((s for s in sizes if s[1] > 0), key=lambda item: item[1], reverse=True)[:top]


def disposable(topology: Topology, truncate_access_log: bool = False) -> list[Path]:
    found = []
    for host in topology.hosts:
        log_dir = host_dir(topology, host.name) / "log"
        if log_dir.is_dir():
            found.extend(p for p in sorted(log_dir.iterdir()) if _ROTATED_LOG.search(p.name))
        access = host_dir(topology, host.name) / "nginx" / "access.log"
        if truncate_access_log and access.is_file():
            found.append(access)
    found.extend(m / BALLOON for m in stack_mounts(topology) if (m / BALLOON).exists())
    return found


def disk(topology: Topology, clean: bool = False, truncate_access_log: bool = False,
         min_free_pct: float | None = None, top: int = 10) -> Outcome:
    """Report free space and the biggest directories; optionally free the disposable."""
    outcome = Outcome(title=f"disk of stack {topology.stack} ({topology.state_dir})",
                      columns=["what", "path", "size MiB", "free MiB", "free %"])
    if not topology.state_dir.exists():
        outcome.fail(f"{topology.state_dir} does not exist: is the stack deployed here?")
        return outcome
    if clean:
        freed = 0
        for path in disposable(topology, truncate_access_log):
            try:
                size = path.lstat().st_blocks * 512
                if path.name == "access.log":
                    os.truncate(path, 0)
                    action = "truncated"
                else:
                    path.unlink()
                    action = "deleted"
            except OSError as exc:
                outcome.note(f"could not remove {path}: {exc.strerror}")
                continue
            freed += size
            outcome.rows.append([action, str(path), round(size / MiB, 1), "", ""])
        outcome.note(f"freed {freed / MiB:.1f} MiB" if freed else
                     "nothing disposable found (rotated logs, GameDay balloons)")
    for mount in stack_mounts(topology):
        fs = filesystem(mount)
        outcome.rows.append(["filesystem", str(mount), round(fs.size / MiB), round(fs.free / MiB),
                             round(fs.free_pct, 1)])
        if min_free_pct is not None and fs.free_pct < min_free_pct:
            outcome.fail(f"{mount} has {fs.free_pct:.1f}% free, below {min_free_pct:g}%")
    for path, size in largest(topology, top):
        outcome.rows.append(["largest", str(path), round(size / MiB, 1), "", ""])
    return outcome
