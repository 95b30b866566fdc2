"""Process faults: crash (a signal; supervisord restarts), hang (SIGSTOP), stop (down)."""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Any

from gameday.faults.base import Fault, UndoContext, service_of, undo_handler


@undo_handler("ensure_running")
def _ensure_running(ctx: UndoContext, undo: dict[str, Any]) -> str:
    svc = service_of(ctx.topology, undo["host"], undo["service"])
    if ctx.target.state(svc).running:
        return f"{svc.name}@{svc.host} already running"
    ctx.target.start(svc)
    return f"started {svc.name}@{svc.host}"


@undo_handler("start_service")
def _start_service(ctx: UndoContext, undo: dict[str, Any]) -> str:
    svc = service_of(ctx.topology, undo["host"], undo["service"])
    ctx.target.start(svc)
    return f"started {svc.name}@{svc.host}"


@undo_handler("resume_processes")
def _resume(ctx: UndoContext, undo: dict[str, Any]) -> str:
    svc = service_of(ctx.topology, undo["host"], undo["service"])
    # The recorded pids and whatever of the service is stopped now: a run killed
    # between SIGSTOP and recording the pids still gets everything continued.
    pids = ctx.target.resume(svc, undo.get("pids", []))
    return f"SIGCONT {len(pids)} process(es) of {svc.name}@{svc.host}"


class ProcessCrash(Fault):
    kind = "process_crash"
    instantaneous = True

    def plan(self) -> list[str]:
        return [f"send SIG{self.params.signal} to the main process of {s.name}@{s.host}; "
                "supervisord is expected to restart it" for s in self.services]

    async def inject(self) -> None:
        self._injected_at = time.monotonic()
        sig = getattr(signal, f"SIG{self.params.signal}")
        for svc in self.services:
            entry = self.record_change(f"{svc.name}@{svc.host} killed with SIG{self.params.signal}",
                                       {"handler": "ensure_running", "host": svc.host,
                                        "service": svc.name})
            pids = await asyncio.to_thread(self.ctx.target.kill, svc, sig)
            self.ctx.rollback_log.update_undo(entry, pids=pids)
            self.applied(entry)
            self.ctx.log(f"SIG{self.params.signal} → {svc.name}@{svc.host} pid {pids}")

    async def rollback(self) -> list[str]:
        # Give supervisord its chance first: starting the program ourselves right
        # away would hide whether self-healing works.
        deadline = getattr(self, "_injected_at", 0.0) + self.params.restart_grace_s
        for svc in self.services:
            while time.monotonic() < deadline:
                state = await asyncio.to_thread(self.ctx.target.state, svc)
                if state.running:
                    break
                await asyncio.sleep(1.0)
        return await super().rollback()


class ProcessHang(Fault):
    kind = "process_hang"

    def plan(self) -> list[str]:
        what = "every process" if self.params.whole_tree else "the main process"
        return [f"SIGSTOP {what} of {s.name}@{s.host} for {self.spec.duration_s:g}s, "
                "then SIGCONT" for s in self.services]

    async def inject(self) -> None:
        for svc in self.services:
            entry = self.record_change(f"{svc.name}@{svc.host} paused (SIGSTOP)",
                                       {"handler": "resume_processes", "host": svc.host,
                                        "service": svc.name, "pids": []})
            if self.params.whole_tree:
                pids = await asyncio.to_thread(self.ctx.target.pause, svc)
            else:
                pids = (await asyncio.to_thread(self.ctx.target.processes, svc))[:1]
                self.ctx.target.signal_pids(pids, signal.SIGSTOP)
            self.ctx.rollback_log.update_undo(entry, pids=pids)
            self.applied(entry)
            self.ctx.log(f"SIGSTOP → {len(pids)} process(es) of {svc.name}@{svc.host}")


class ServiceStop(Fault):
    kind = "service_stop"

    def plan(self) -> list[str]:
        how = ("SIGKILL the process tree, then supervisorctl stop (held down)"
               if self.params.signal == "KILL" else "supervisorctl stop")
        return [f"{how} {s.name}@{s.host} for {self.spec.duration_s:g}s, then start"
                for s in self.services]

    async def inject(self) -> None:
        # Journal every instance first, then act on all at once: "all app hosts down"
        # should be simultaneous, not staggered by supervisorctl round trips.
        entries = [self.record_change(f"{svc.name}@{svc.host} stopped",
                                      {"handler": "start_service", "host": svc.host,
                                       "service": svc.name}) for svc in self.services]

        def take_down(svc: Any) -> None:
            if self.params.signal == "KILL":
                self.ctx.target.signal_pids(self.ctx.target.processes(svc), signal.SIGKILL)
            self.ctx.target.stop(svc)

        await asyncio.gather(*(asyncio.to_thread(take_down, s) for s in self.services))
        for entry in entries:
            self.applied(entry)
        self.ctx.log(f"stopped {', '.join(f'{s.name}@{s.host}' for s in self.services)}")
