"""Concurrency surge: the load generator jumps from its users to `users`, then back.

Nothing on the stack is changed, so the rollback log entry's undo is a no-op; it is still
recorded so that the rollback log tells the whole story of the run.
"""

from __future__ import annotations

from gameday.faults.base import Fault


class LoadSurge(Fault):
    kind = "load_surge"

    @property
    def services(self) -> list:  # type: ignore[override]
        return []

    def describe(self) -> str:
        return f"load_surge to {self.params.users} users"

    def plan(self) -> list[str]:
        return [f"raise the load to {self.params.users} concurrent users "
                f"(ramp {self.params.ramp_s:g}s) for {self.spec.duration_s:g}s, then back"]

    async def inject(self) -> None:
        entry = self.record_change(f"load raised to {self.params.users} users", {"handler": "none"})
        self._before = None
        if self.ctx.load is not None:
            self._before = self.ctx.load.users
            await self.ctx.load.set_users(self.params.users, ramp_s=self.params.ramp_s)
        self.applied(entry)

    async def rollback(self) -> list[str]:
        if self.ctx.load is not None and getattr(self, "_before", None) is not None:
            await self.ctx.load.set_users(self._before)
            self._before = None
        return await super().rollback()
