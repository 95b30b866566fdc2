"""The one reader of /proc: process trees, their states and CPU time, socket holders,
and the machine's busy/idle/iowait time.

supervisord knows only a service's main pid; PostgreSQL's backends, Gunicorn's
workers and nginx's workers are its descendants, so holding a service down, listing
its processes (`python -m infra.ops processes`), continuing a frozen one and the
benchmark's CPU accounting all start from the same process table read here.

Hand-parsed rather than psutil: every reader takes a `proc` root so the unit tests
can build a fake /proc in a temporary directory, which psutil cannot point at per call.
"""

from __future__ import annotations

import os
import signal
import socket
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
TICK = os.sysconf("SC_CLK_TCK")

#: /proc/<pid>/stat state letters, in the words of `ps`.
STATES = {"R": "running", "S": "sleeping", "D": "disk wait", "T": "stopped",
          "t": "traced", "Z": "zombie", "I": "idle", "X": "dead"}


@dataclass(frozen=True)
class ProcInfo:
    pid: int
    ppid: int
    state: str
    comm: str
    #: The command line (NULs as spaces), or `comm` when it is empty (kernel threads,
    #: zombies); filled only by `read_proc(..., with_command=True)`.
    command: str = ""

    @property
    def stopped(self) -> bool:
        """Stopped by a signal or a debugger: it cannot act on SIGINT/SIGTERM until
        continued."""
        return self.state in ("T", "t")


def _stat(pid: int, proc: Path) -> tuple[str, list[str]] | None:
    """(comm, the fields after comm) of /proc/<pid>/stat, or None if it is gone."""
    try:
        raw = (proc / str(pid) / "stat").read_text()
    except OSError:
        return None
    # comm is in parentheses and may itself contain spaces or ')': split at the last.
    head, _, tail = raw.rpartition(")")
    fields = tail.split()
    if len(fields) < 2:
        return None
    return head.partition("(")[2], fields


def read_proc(pid: int, proc: Path = PROC, *, with_command: bool = False) -> ProcInfo | None:
    """The process's parent and state (and its command line with `with_command`:
    then a process whose cmdline cannot be read counts as gone)."""
    stat = _stat(pid, proc)
    if stat is None:
        return None
    comm, fields = stat
    command = ""
    if with_command:
        try:
            raw_cmd = (proc / str(pid) / "cmdline").read_bytes()
        except OSError:
            return None
        command = raw_cmd.replace(b"\0", b" ").decode(errors="replace").strip() or comm
    return ProcInfo(pid=pid, ppid=int(fields[1]), state=fields[0], comm=comm, command=command)


def _pids(proc: Path) -> list[int]:
    return [int(entry.name) for entry in proc.iterdir() if entry.name.isdigit()]


def all_processes(proc: Path = PROC, *, with_command: bool = False) -> list[ProcInfo]:
    out = []
    for pid in _pids(proc):
        info = read_proc(pid, proc, with_command=with_command)
        if info is not None:
            out.append(info)
    return out


def _children(parents: Iterable[tuple[int, int]]) -> dict[int, list[int]]:
    """ppid -> its children's pids, from (pid, ppid) pairs."""
    children: dict[int, list[int]] = {}
    for pid, ppid in parents:
        children.setdefault(ppid, []).append(pid)
    return children


def descendants(root: int, proc: Path = PROC) -> list[int]:
    """`root` and every process below it, parents before children."""
    children = _children((info.pid, info.ppid) for info in all_processes(proc))
    order, queue, seen = [], [root], set()
    while queue and len(order) < 100_000:
        pid = queue.pop(0)
        if pid in seen:
            continue
        seen.add(pid)
        order.append(pid)
        queue.extend(sorted(children.get(pid, [])))
    return order


def tree(root: int, proc: Path = PROC) -> list[ProcInfo]:
    """`root` and all its descendants with their command lines (root first, then by
    pid); empty if `root` is gone."""
    table = {info.pid: info for info in all_processes(proc, with_command=True)}
    if root not in table:
        return []
    children = _children((info.pid, info.ppid) for info in table.values())
    found, frontier = [], [root]
    while frontier:
        for pid in children.get(frontier.pop(), []):
            found.append(table[pid])
            frontier.append(pid)
    return [table[root], *sorted(found, key=lambda p: p.pid)]


def stopped(pids: list[int], proc: Path = PROC) -> list[int]:
    """The pids in state T (stopped by a signal)."""
    out = []
    for pid in pids:
        info = read_proc(pid, proc)
        if info is not None and info.stopped:
            out.append(pid)
    return out


def resume(processes: list[ProcInfo]) -> list[int]:
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


def cmdline(pid: int, proc: Path = PROC) -> str:
    try:
        return (proc / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(
            errors="replace").strip()
    except OSError:
        return ""


def environ(pid: int, proc: Path = PROC) -> str:
    """The process's environment as it was at exec (NUL-separated `KEY=value`), or ''
    when it is gone or not ours to read."""
    try:
        return (proc / str(pid) / "environ").read_bytes().decode(errors="replace")
    except OSError:
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


# --- CPU time ------------------------------------------------------------------------


def parse_stat_cpu(rest: list[str]) -> tuple[int, float]:
    """(ppid, cpu seconds incl. reaped children) from the fields after comm."""
    ppid = int(rest[1])
    utime, stime, cutime, cstime = (int(x) for x in rest[11:15])
    return ppid, (utime + stime + cutime + cstime) / TICK


def cpu_table(proc: Path = PROC) -> dict[int, tuple[int, float]]:
    """pid -> (ppid, CPU seconds incl. reaped children) of every live process.

    Exited children are counted through their parent's cutime/cstime, so a tree's
    time does not drop when a worker is replaced.
    """
    table = {}
    for pid in _pids(proc):
        stat = _stat(pid, proc)
        if stat is not None:
            table[pid] = parse_stat_cpu(stat[1])
    return table


def tree_cpu_s(roots: Iterable[int], table: Mapping[int, tuple[int, float]]) -> float:
    """CPU seconds of the roots and every live descendant."""
    children = _children((pid, ppid) for pid, (ppid, _cpu) in table.items())
    seen: set[int] = set()
    stack = [r for r in roots if r in table]
    total = 0.0
    while stack:
        pid = stack.pop()
        if pid in seen:
            continue
        seen.add(pid)
        total += table[pid][1]
        stack.extend(children.get(pid, ()))
    return total


#: Machine-wide times in a snapshot: not process groups, never part of "other".
MACHINE_KEYS = ("machine", "idle", "iowait")


def machine_times_s(proc: Path = PROC) -> dict[str, float]:
    """All CPUs' busy, idle and iowait time since boot, in seconds (from /proc/stat)."""
    first = (proc / "stat").read_text().splitlines()[0].split()
    user, nice, system, idle, iowait, irq, softirq, steal = (int(x) for x in first[1:9])
    return {"machine": (user + nice + system + irq + softirq + steal) / TICK,
            "idle": idle / TICK, "iowait": iowait / TICK}


# --- sockets -------------------------------------------------------------------------


def _hex_endpoint(address: str, port: int) -> str:
    # /proc/net/tcp prints the IPv4 address as a host-order 32-bit word.
    packed = socket.inet_aton(address)
    return f"{struct.unpack('<I', packed)[0]:08X}:{port:04X}"


def _listen_inodes(address: str, port: int, proc: Path) -> set[str]:
    wanted = {_hex_endpoint(address, port), _hex_endpoint("0.0.0.0", port)}
    inodes: set[str] = set()
    try:
        lines = (proc / "net" / "tcp").read_text().splitlines()[1:]
    except OSError:
        return inodes
    for line in lines:
        cols = line.split()
        if len(cols) > 9 and cols[3] == "0A" and cols[1] in wanted:
            inodes.add(cols[9])
    return inodes


def socket_holders(address: str, port: int, proc: Path = PROC) -> set[int]:
    """Every process holding the listening socket of address:port (workers included)."""
    inodes = {f"socket:[{i}]" for i in _listen_inodes(address, port, proc)}
    if not inodes:
        return set()
    holders = set()
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fds = list((entry / "fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(fd) in inodes:
                    holders.add(int(entry.name))
                    break
            except OSError:
                continue
    return holders


def listener_pids(address: str, port: int, proc: Path = PROC) -> list[int]:
    """Root processes holding the listening socket of address:port (not their workers)."""
    holders = socket_holders(address, port, proc)
    table = cpu_table(proc)
    return sorted(p for p in holders if table.get(p, (0, 0.0))[0] not in holders)
