"""CPU saturation on an app host: bounded busy-loop processes.

Each worker is a tiny Python busy loop with its own deadline (the fault's duration plus
a margin), so a worker cannot outlive the GameDay even if the engine is SIGKILLed;
rollback and cleanup also kill them by the marker they carry in argv. They run as the
target service's user (a runaway process of that service) with `nice` as given.

On the local target every "host" shares this machine's CPUs, so saturating "app1"
saturates the machine: the whole stack slows down, not one app host. A cgroup cpuset
per host would fix that and belongs to deploy; this fault is honest about it in its
plan.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

from gameday.faults.base import Fault, marker_for

_BUSY = ("import sys,time\n"
         "end=time.monotonic()+float(sys.argv[1])\n"
         "while time.monotonic()<end:\n"
         "    for _ in range(100000): pass\n")
PYTHON = "/usr/bin/python3"


class CpuSaturation(Fault):
    kind = "cpu_saturation"

    @property
    def workers(self) -> int:
        return self.params.workers or os.cpu_count() or 2

    def plan(self) -> list[str]:
        user = self.ctx.target.user_of(self.service.name) if self.params.as_service_user \
            else "root"
        return [f"{self.workers} busy-loop process(es) as {user}, nice {self.params.nice}, "
                f"for {self.spec.duration_s:g}s (loopback hosts share this machine's CPUs: "
                "the whole machine saturates)"]

    def preflight(self) -> list[str]:
        if self.params.as_service_user:
            import pwd

            user = self.ctx.target.user_of(self.service.name)
            try:
                pwd.getpwnam(user)
            except KeyError:
                return [f"system user {user!r} does not exist: is the stack deployed?"]
        return []

    async def inject(self) -> None:
        marker = marker_for(self.ctx, f"cpu-{self.service.host}")
        entry = self.record_change(f"{self.workers} CPU busy loops ({marker})",
                                   {"handler": "kill_marked_processes", "marker": marker,
                                    "pids": []})
        lifetime = self.spec.duration_s + 30
        argv: list[Any] = ["nice", "-n", str(self.params.nice), PYTHON if os.path.exists(
            PYTHON) else sys.executable, "-c", _BUSY, str(lifetime), marker]
        if self.params.as_service_user:
            argv = ["/usr/sbin/runuser", "-u", self.ctx.target.user_of(self.service.name),
                    "--", *argv]
        self._procs = []
        for _ in range(self.workers):
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL, start_new_session=True)
            self._procs.append(proc)
        self.ctx.rollback_log.update_undo(entry, pids=[p.pid for p in self._procs])
        self.applied(entry)
        self.ctx.log(f"{self.workers} busy loops started")

    async def rollback(self) -> list[str]:
        done = await super().rollback()
        for proc in getattr(self, "_procs", []):
            try:
                await asyncio.wait_for(proc.wait(), timeout=10)
            except TimeoutError:
                proc.kill()
        return done
