"""Let a process tree run on every online CPU: python3 widen_cpus.py PIDFILE.

Mitogen pins the processes it starts (on a 2-CPU machine to CPU 1 alone) and every
child inherits the mask, so a supervisord started under it kept the whole stack on
one core. No Ansible module sets CPU affinity; taskset has no tree walk. Prints one
line per process it changed (the task's changed_when reads them).
"""

import os
import sys


def online_cpus() -> set[int]:
    with open("/sys/devices/system/cpu/online") as fh:
        text = fh.read().strip()
    cpus: set[int] = set()
    for part in text.split(","):
        low, _, high = part.partition("-")
        cpus.update(range(int(low), int(high or low) + 1))
    return cpus


def threads_and_children(pid: int) -> tuple[list[int], list[int]]:
    tids, children = [], []
    for tid in os.listdir(f"/proc/{pid}/task"):
        tids.append(int(tid))
        with open(f"/proc/{pid}/task/{tid}/children") as fh:
            children += [int(c) for c in fh.read().split()]
    return tids, children


def widen(root: int, cpus: set[int]) -> None:
    pending = [root]
    while pending:
        pid = pending.pop()
        try:
            tids, children = threads_and_children(pid)
            changed = False
            for tid in tids:
                if os.sched_getaffinity(tid) != cpus:
                    os.sched_setaffinity(tid, cpus)
                    changed = True
        except (FileNotFoundError, ProcessLookupError):
            continue  # exited meanwhile
        if changed:
            print(f"widened {pid}")
        pending += children


if __name__ == "__main__":
    with open(sys.argv[1]) as pidfile:
        widen(int(pidfile.read().strip()), online_cpus())
