"""A client leaking Redis connections up to maxclients.

The fault opens connections (AUTH, `CLIENT SETNAME <marker>`) until Redis has
`maxclients - headroom` clients and holds them idle; then it opens `headroom + burst`
more at once, the way a leaking client keeps trying: the ones past maxclients are
refused (`ERR max number of clients reached`, counted in `rejected_connections`), the
ones that got in are closed at once. `headroom` slots stay free afterwards so that the
exporter (a new connection per scrape), the app and an operator still get in.

Rollback: the undo (`kill_redis_clients`, recorded before the first connection) closes
the fault's connections and CLIENT KILLs whatever still carries its name. A killed
engine's sockets close with it, and Redis frees their slots at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from gameday.faults.base import Fault, UndoContext, undo_handler
from infra.connections import redis_client, stack_secret

NAME_PREFIX = "civicpulse-gameday-flood"


@undo_handler("kill_redis_clients")
def _kill_clients(ctx: UndoContext, undo: dict[str, Any]) -> str:
    name = undo["name"]
    if not name.startswith(NAME_PREFIX):
        raise ValueError(f"refusing to kill Redis clients named {name!r}: not a GameDay's")
    conn = redis_client(ctx.topology, ctx.topology.one("redis"), timeout_s=5)
    try:
        ids = [c["id"] for c in conn.client_list() if c.get("name") == name]
        for client_id in ids:
            with contextlib.suppress(Exception):
                conn.client_kill_filter(_id=client_id)
    finally:
        conn.close()
    return f"killed {len(ids)} Redis client(s) named {name}"


def flood_size(maxclients: int, connected: int, headroom: int) -> int:
    """Connections to hold so that `headroom` slots stay free."""
    return max(0, maxclients - headroom - connected)


class RedisConnectionFlood(Fault):
    kind = "redis_connection_flood"
    target_service = "redis"

    @property
    def client_name(self) -> str:
        return f"{NAME_PREFIX}-{self.ctx.run_id}"

    def plan(self) -> list[str]:
        svc = self.service
        return [f"hold idle connections to {svc.name}@{svc.host} up to maxclients "
                f"({self.ctx.topology.sizing.redis.maxclients}) - {self.params.headroom}, "
                f"then {self.params.headroom + self.params.burst} more at once (the ones "
                f"past maxclients are refused), {self.spec.duration_s:g}s"]

    def preflight(self) -> list[str]:
        problems = super().preflight()
        if not problems and self.ctx.topology.sizing.redis.maxclients > 5000:
            problems = [f"maxclients {self.ctx.topology.sizing.redis.maxclients} is more "
                        "connections than this fault opens (5000 at most)"]
        return problems

    async def inject(self) -> None:
        self._held: list[Any] = []
        held, refused, maxclients = await self.change_logged(
            f"Redis connections named {self.client_name}",
            {"handler": "kill_redis_clients", "name": self.client_name}, self._flood)
        self.ctx.log(f"holding {held} Redis connection(s) of maxclients {maxclients}; the "
                     f"burst had {refused} refused")

    def _connection(self) -> Any:
        import redis

        svc = self.service
        return redis.Connection(host=svc.address, port=svc.port,
                                password=stack_secret(self.ctx.topology, "redis"),
                                client_name=self.client_name, socket_timeout=5,
                                socket_connect_timeout=5)

    def _flood(self) -> tuple[int, int, int]:
        import redis

        admin = redis_client(self.ctx.topology, self.service, timeout_s=5)
        try:
            maxclients = int(admin.config_get("maxclients")["maxclients"])
            connected = int(admin.info("clients")["connected_clients"])
        finally:
            admin.close()  # our slot is free again before the flood counts them
        wanted = min(5000, flood_size(maxclients, connected, self.params.headroom))
        for _ in range(wanted):
            conn = self._connection()
            try:
                conn.connect()
            except redis.RedisError:
                break  # full already (someone else connected meanwhile)
            self._held.append(conn)
        refused = 0
        burst = []
        for _ in range(self.params.headroom + self.params.burst):
            conn = self._connection()
            try:
                conn.connect()
                burst.append(conn)
            except redis.RedisError:
                refused += 1
        for conn in burst:
            with contextlib.suppress(Exception):
                conn.disconnect()
        return len(self._held), refused, maxclients

    async def rollback(self) -> list[str]:
        held = getattr(self, "_held", [])

        def close_all() -> None:
            for conn in held:
                with contextlib.suppress(Exception):
                    conn.disconnect()

        await asyncio.to_thread(close_all)
        self._held = []
        return await super().rollback()
