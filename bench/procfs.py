"""CPU time of process trees, read from /proc: where the time of a point went.

A service is identified by the process listening on its address and port (nginx,
Gunicorn, PgBouncer, the postmaster) plus all its descendants (workers, backends).
Exited children are counted through their parent's cutime/cstime. The machine's
total busy time is read too, so that CPU burnt by other jobs on the box shows up.
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Iterable, Mapping
from pathlib import Path

PROC = Path("/proc")
TICK = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # comm (field 2) may contain spaces and parentheses: split after the last ')'.
    return text[text.rindex(")") + 2:].split()


def parse_stat_cpu(rest: list[str]) -> tuple[int, float]:
    """(ppid, cpu seconds incl. reaped children) from the fields after comm."""
    ppid = int(rest[1])
    utime, stime, cutime, cstime = (int(x) for x in rest[11:15])
    return ppid, (utime + stime + cutime + cstime) / TICK


def _process_table() -> dict[int, tuple[int, float]]:
    table = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            rest = _stat_fields(int(entry.name))
            if rest is not None:
                table[int(entry.name)] = parse_stat_cpu(rest)
    return table


def tree_cpu_s(roots: Iterable[int], table: Mapping[int, tuple[int, float]]) -> float:
    """CPU seconds of the roots and every live descendant."""
    children: dict[int, list[int]] = {}
    for pid, (ppid, _cpu) in table.items():
        children.setdefault(ppid, []).append(pid)
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


def _hex_endpoint(address: str, port: int) -> str:
    # /proc/net/tcp prints the IPv4 address as a host-order 32-bit word.
    packed = socket.inet_aton(address)
    return f"{struct.unpack('<I', packed)[0]:08X}:{port:04X}"


def _listen_inodes(address: str, port: int) -> set[str]:
    wanted = {_hex_endpoint(address, port), _hex_endpoint("0.0.0.0", port)}
    inodes = set()
    try:
        lines = (PROC / "net" / "tcp").read_text().splitlines()[1:]
    except OSError:
        return inodes
    for line in lines:
        cols = line.split()
        if len(cols) > 9 and cols[3] == "0A" and cols[1] in wanted:
            inodes.add(cols[9])
    return inodes


def socket_holders(address: str, port: int) -> set[int]:
    """Every process holding the listening socket of address:port (workers included)."""
    inodes = {f"socket:[{i}]" for i in _listen_inodes(address, port)}
    if not inodes:
        return set()
    holders = set()
    for entry in PROC.iterdir():
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


def listener_pids(address: str, port: int) -> list[int]:
    """Root processes holding the listening socket of address:port (not their workers)."""
    holders = socket_holders(address, port)
    table = _process_table()
    return sorted(p for p in holders if table.get(p, (0, 0.0))[0] not in holders)


#: Machine-wide times in a snapshot: not process groups, never part of "other".
MACHINE_KEYS = ("machine", "idle", "iowait")


def machine_times_s() -> dict[str, float]:
    """All CPUs' busy, idle and iowait time since boot, in seconds (from /proc/stat)."""
    first = (PROC / "stat").read_text().splitlines()[0].split()
    user, nice, system, idle, iowait, irq, softirq, steal = (int(x) for x in first[1:9])
    return {"machine": (user + nice + system + irq + softirq + steal) / TICK,
            "idle": idle / TICK, "iowait": iowait / TICK}


class CpuMeter:
    """Snapshots of CPU seconds per named group, plus the machine.

    `groups` are process trees (a service and its workers); `singles` are processes
    counted without their children (a supervisord, whose children are the services).
    """

    def __init__(self, groups: Mapping[str, list[int]],
                 singles: Mapping[str, list[int]] | None = None) -> None:
        self.groups = {name: list(pids) for name, pids in groups.items() if pids}
        self.singles = {name: list(pids) for name, pids in (singles or {}).items() if pids}

    def snapshot(self) -> dict[str, float]:
        table = _process_table()
        snap = {name: tree_cpu_s(pids, table) for name, pids in self.groups.items()}
        for name, pids in self.singles.items():
            snap[name] = sum(table[p][1] for p in pids if p in table)
        snap.update(machine_times_s())
        return snap

    @staticmethod
    def cores(before: Mapping[str, float], after: Mapping[str, float], wall_s: float,
              extra_cpu_s: Mapping[str, float] | None = None) -> dict[str, float]:
        """Average cores used per group over the interval; `extra_cpu_s` adds groups
        measured elsewhere (the load client); 'other' is the rest of the box, and
        'idle' / 'iowait' are the machine's unused cores (iowait: idle with I/O due)."""
        if wall_s <= 0:
            return {}
        used = {k: max(0.0, after[k] - before[k]) / wall_s for k in before if k in after}
        used.update({k: v / wall_s for k, v in (extra_cpu_s or {}).items()})
        whole = {k: used.pop(k) for k in MACHINE_KEYS if k in used}
        used["other"] = max(0.0, whole.get("machine", 0.0) - sum(used.values()))
        used.update(whole)
        return {k: round(v, 3) for k, v in used.items()}
