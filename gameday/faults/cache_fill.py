"""Redis filled towards maxmemory by a foreign writer: filler keys with a TTL.

The fault writes `value_kb` values under `civicpulse-gameday:<stack>:fill:<run>:<n>`
until `used_memory` reaches `fill_percent` of `maxmemory` (bounded by a key count
derived from maxmemory, so it ends even if Redis frees memory as fast as we write).
With the lab's `allkeys-lru` Redis then evicts to stay under maxmemory: the app's
cached users go first, its hit rate drops, nothing fails. With `noeviction` the
app's cache stores would fail (swallowed by the app, counted as cache errors).

A Redis without maxmemory is refused: filling it would take the machine's memory.

Rollback: the undo (`redis_delete_prefix`, recorded before the first write) UNLINKs
every key under the run's prefix; cleanup's sweep deletes any key under the stack's
GameDay prefix. And every filler key carries a TTL of the fault's duration plus a
margin, so a run killed before either still leaves nothing behind for long.
"""

from __future__ import annotations

from typing import Any

from gameday.faults.base import Fault, UndoContext, undo_handler
from infra.connections import redis_client

KEY_PREFIX = "civicpulse-gameday:"
#: Filler keys outlive the fault by this much at most, whatever happens to the engine.
TTL_MARGIN_S = 120


def stack_prefix(stack: str) -> str:
    return f"{KEY_PREFIX}{stack}:"


def delete_prefix(conn: Any, prefix: str, max_rounds: int = 10_000) -> int:
    """UNLINK every key under `prefix` (SCAN-driven, bounded); returns how many."""
    if not prefix.startswith(KEY_PREFIX) or len(prefix) <= len(KEY_PREFIX):
        raise ValueError(f"refusing to delete keys under {prefix!r}: not a GameDay prefix")
    deleted = 0
    cursor = 0
    for _ in range(max_rounds):
        cursor, keys = conn.scan(cursor=cursor, match=prefix + "*", count=1000)
        if keys:
            deleted += int(conn.unlink(*keys))
        if int(cursor) == 0:
            break
    return deleted


@undo_handler("redis_delete_prefix")
def _undo_fill(ctx: UndoContext, undo: dict[str, Any]) -> str:
    conn = redis_client(ctx.topology, ctx.topology.one("redis"), timeout_s=5)
    try:
        deleted = delete_prefix(conn, undo["prefix"])
    finally:
        conn.close()
    return f"deleted {deleted} filler key(s) under {undo['prefix']}"


def fill_plan(maxmemory: int, value_bytes: int) -> int:
    """At most this many filler keys: maxmemory's worth and 10 % more."""
    return max(1, int(maxmemory * 1.1) // value_bytes + 1)


class RedisFill(Fault):
    kind = "redis_fill"
    target_service = "redis"

    @property
    def prefix(self) -> str:
        return f"{stack_prefix(self.ctx.topology.stack)}fill:{self.ctx.run_id}:"

    @property
    def value_bytes(self) -> int:
        return int(self.params.value_kb) * 1024

    def plan(self) -> list[str]:
        svc = self.service
        return [f"write {self.params.value_kb} KiB filler keys {self.prefix}<n> (TTL "
                f"{self.spec.duration_s + TTL_MARGIN_S:g}s) to {svc.name}@{svc.host} until "
                f"used_memory is {self.params.fill_percent}% of maxmemory "
                f"({self.ctx.topology.sizing.redis.maxmemory_mb} MiB), "
                f"{self.spec.duration_s:g}s"]

    def preflight(self) -> list[str]:
        problems = super().preflight()
        if not problems and not self.ctx.topology.sizing.redis.maxmemory_mb:
            problems = ["redis_fill needs sizing.redis.maxmemory_mb: without maxmemory Redis "
                        "would take the machine's memory; nothing was written"]
        return problems

    async def inject(self) -> None:
        written, used, maxmemory = await self.change_logged(
            f"filler keys under {self.prefix}",
            {"handler": "redis_delete_prefix", "prefix": self.prefix}, self._fill)
        self.ctx.log(f"wrote {written} filler key(s): used_memory {used / 2**20:.0f} MiB of "
                     f"{maxmemory / 2**20:.0f} MiB ({used / maxmemory:.0%})")

    def _fill(self) -> tuple[int, int, int]:
        conn = redis_client(self.ctx.topology, self.service, timeout_s=5)
        try:
            maxmemory = int(conn.config_get("maxmemory").get("maxmemory", 0))
            if maxmemory <= 0:
                raise RuntimeError("Redis runs without maxmemory: refusing to fill it")
            goal = maxmemory * self.params.fill_percent / 100
            value = b"x" * self.value_bytes
            ttl = int(self.spec.duration_s + TTL_MARGIN_S)
            written = 0
            used = int(conn.info("memory")["used_memory"])
            limit = fill_plan(maxmemory, self.value_bytes)
            while used < goal and written < limit:
                batch = max(1, min(8, int((goal - used) // self.value_bytes) + 1,
                                   limit - written))
                pipe = conn.pipeline(transaction=False)
                for n in range(written, written + batch):
                    pipe.set(f"{self.prefix}{n}", value, ex=ttl)
                pipe.execute()
                written += batch
                used = int(conn.info("memory")["used_memory"])
            return written, used, maxmemory
        finally:
            conn.close()
