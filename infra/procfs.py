"""Process trees from /proc: who descends from a service's main process, who is stopped.

supervisord knows only the main pid; PostgreSQL's backends, Gunicorn's workers and
nginx's workers are its descendants and must be signalled too for a real hang.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")


@dataclass(frozen=True)
class ProcInfo:
    pid: int
    ppid: int
    state: str
    comm: str


def read_proc(pid: int, proc: Path = PROC) -> ProcInfo | None:
    try:
        raw = (proc / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # comm is in parentheses and may itself contain spaces or ')': split at the last.
    head, _, tail = raw.rpartition(")")
    comm = head.partition("(")[2]
    fields = tail.split()
    if len(fields) < 2:
        return None
    return ProcInfo(pid=pid, ppid=int(fields[1]), state=fields[0], comm=comm)


def all_processes(proc: Path = PROC) -> list[ProcInfo]:
    out = []
    for entry in proc.iterdir():
        if entry.name.isdigit():
            info = read_proc(int(entry.name), proc)
            if info is not None:
                out.append(info)
    return out


def descendants(root: int, proc: Path = PROC) -> list[int]:
    """`root` and every process below it, parents before children."""
    children: dict[int, list[int]] = {}
    for info in all_processes(proc):
        children.setdefault(info.ppid, []).append(info.pid)
    order, queue, seen = [], [root], set()
    while queue and len(order) < 100_000:
        pid = queue.pop(0)
        if pid in seen:
            continue
        seen.add(pid)
        order.append(pid)
        queue.extend(sorted(children.get(pid, [])))
    return order


def stopped(pids: list[int], proc: Path = PROC) -> list[int]:
    """The pids in state T (stopped by a signal)."""
    out = []
    for pid in pids:
        info = read_proc(pid, proc)
        if info is not None and info.state in ("T", "t"):
            out.append(pid)
    return out


def cmdline(pid: int, proc: Path = PROC) -> str:
    try:
        return (proc / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(
            errors="replace").strip()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return ""


def execed_away_from_parent(pid: int, proc: Path = PROC) -> bool:
    """Whether a forked child has exec'd its own program (its cmdline left its parent's).

    Until it has, a signal reaches the parent's code running in the child (supervisord
    installs Python handlers) and is lost when the child execs.
    """
    info = read_proc(pid, proc)
    if info is None:
        return False
    mine = cmdline(pid, proc)
    return bool(mine) and mine != cmdline(info.ppid, proc)


def pids_with_marker(marker: str, proc: Path = PROC) -> list[int]:
    """Processes whose command line contains `marker` (our stress workers and proxies
    carry one, so that cleanup never signals a stranger that reused a pid)."""
    me = os.getpid()
    return [p.pid for p in all_processes(proc) if p.pid != me and marker in cmdline(p.pid, proc)]
