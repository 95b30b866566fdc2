"""The processes of one supervised program, read from /proc.

A service is more than its main pid (PostgreSQL backends, Gunicorn workers), and a
"hung" service is often a tree of stopped (`T`) processes: restarting it cleanly
needs them continued first, since a stopped process cannot act on SIGINT/SIGTERM.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")

#: /proc/<pid>/stat state letters, in the words of `ps`.
STATES = {"R": "running", "S": "sleeping", "D": "disk wait", "T": "stopped",
          "t": "traced", "Z": "zombie", "I": "idle", "X": "dead"}


@dataclass(frozen=True)
class ProcessInfo:
    pid: int
    ppid: int
    state: str
    command: str

    @property
    def stopped(self) -> bool:
        return self.state in ("T", "t")


def read_process(pid: int, proc: Path = PROC) -> ProcessInfo | None:
    try:
        stat = (proc / str(pid) / "stat").read_text()
        raw_cmd = (proc / str(pid) / "cmdline").read_bytes()
    except OSError:
        return None
    # The command name is in parentheses and may itself contain spaces or ")".
    rest = stat[stat.rindex(")") + 2:].split()
    command = raw_cmd.replace(b"\0", b" ").decode(errors="replace").strip()
    return ProcessInfo(pid=pid, ppid=int(rest[1]), state=rest[0],
                       command=command or stat[stat.index("(") + 1:stat.rindex(")")])


def tree(root: int, proc: Path = PROC) -> list[ProcessInfo]:
    """`root` and all its descendants (root first, then by pid)."""
    table = {}
    for entry in proc.iterdir():
        if entry.name.isdigit():
            info = read_process(int(entry.name), proc)
            if info is not None:
                table[info.pid] = info
    if root not in table:
        return []
    found, frontier = [], [root]
    while frontier:
        parent = frontier.pop()
        for info in table.values():
            if info.ppid == parent:
                found.append(info)
                frontier.append(info.pid)
    return [table[root], *sorted(found, key=lambda p: p.pid)]


def resume(processes: list[ProcessInfo]) -> list[int]:
    """SIGCONT every stopped process of the list; returns the pids continued."""
    resumed = []
    for info in processes:
        if not info.stopped:
            continue
        try:
            os.kill(info.pid, signal.SIGCONT)
            resumed.append(info.pid)
        except ProcessLookupError:
            pass
    return resumed
