"""Where the CPU time of a point went: snapshots of CPU seconds per service.

A service is identified by the process listening on its address and port (nginx,
Gunicorn, PgBouncer, the postmaster) plus all its descendants (workers, backends).
Exited children are counted through their parent's cutime/cstime. The machine's
total busy time is read too, so that CPU burnt by other jobs on the box shows up.
The /proc reading is `infra.procfs` (one reader for the whole repository).
"""

from __future__ import annotations

from collections.abc import Mapping

from infra.procfs import MACHINE_KEYS, cpu_table, machine_times_s, tree_cpu_s


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
        table = cpu_table()
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
