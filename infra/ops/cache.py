"""Delete poisoned cache entries from Redis (the app re-reads them from PostgreSQL).

Deleting a cache key is always safe for CivicPulse: the cache is cache-aside and
PostgreSQL is the source of truth, so the next read misses and re-caches the row.
Values are never printed (they are user data); only key names and counts are.
"""

from __future__ import annotations

import redis

from infra.connections import redis_client
from infra.ops.outcome import OpsError, Outcome, unreadable_secret
from infra.ops.select import one_instance
from infra.topology import Topology


def client(topology: Topology, timeout_s: float = 2.0) -> redis.Redis:
    svc = one_instance(topology, "redis")
    try:
        return redis_client(topology, svc, timeout_s)
    except OSError as exc:
        raise unreadable_secret(topology, "redis", exc) from None


def delete_keys(topology: Topology, keys: list[str], pattern: str | None = None,
                max_keys: int = 1000, dry_run: bool = False) -> Outcome:
    """DEL the named keys and, with `pattern`, the keys SCAN finds matching it (at most
    `max_keys`, so a careless `*` cannot wipe a production cache in one go)."""
    if not keys and not pattern:
        raise OpsError("name the keys to delete (e.g. user:42) or pass --pattern 'user:*'")
    if pattern is not None and pattern.strip("*") == "" and not dry_run:
        raise OpsError(f"--pattern {pattern!r} matches every key: that is a cache flush, "
                       "not a poisoned key; use --dry-run to see what it would take, and "
                       "narrow the pattern")
    outcome = Outcome(title=f"{'would delete' if dry_run else 'deleted'} from Redis",
                      columns=["key", "result"])
    conn = client(topology)
    try:
        wanted = list(dict.fromkeys(keys))
        if pattern is not None:
            for key in conn.scan_iter(match=pattern, count=500):
                name = key.decode(errors="replace") if isinstance(key, bytes) else str(key)
                if name not in wanted:
                    wanted.append(name)
                if len(wanted) > max_keys:
                    raise OpsError(f"--pattern {pattern!r} matches more than {max_keys} keys; "
                                   "narrow it or raise --max")
        for key in wanted:
            if dry_run:
                outcome.rows.append([key, "exists" if conn.exists(key) else "absent"])
            else:
                outcome.rows.append([key, "deleted" if conn.delete(key) else "absent"])
    except redis.RedisError as exc:
        outcome.fail(f"Redis at {one_instance(topology, 'redis').endpoint} failed: {exc}")
    finally:
        conn.close()
    return outcome
