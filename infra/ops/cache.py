"""Delete poisoned cache entries from Redis (the app re-reads them from PostgreSQL).

Deleting a cache key is always safe for CivicPulse: the cache is cache-aside and
PostgreSQL is the source of truth, so the next read misses and re-caches the row.
Values are never printed (they are user data); only key names and counts are.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import redis

from infra.connections import redis_client
from infra.ops.outcome import OpsError, Outcome, unreadable_secret
from infra.ops.select import one_instance
from infra.topology import Topology

#: The app's own keys (app/civicpulse/core/user_store.py, `user_cache_key`). Redis is
#: the app's cache alone: any other key is foreign, and its writer must be found.
APP_KEY = re.compile(r"user:\d+")


def key_group(name: str) -> str:
    """The pattern a key belongs to: its name up to the last `:` segment, plus `*`
    (`user:42` → `user:*`); a key without `:` is its own group."""
    return name.rsplit(":", 1)[0] + ":*" if ":" in name else name


def is_foreign(name: str) -> bool:
    return APP_KEY.fullmatch(name) is None


def group_keys(keys: Iterable[tuple[str, int, bool]]) -> list[list]:
    """(name, bytes, has_ttl) → rows [pattern, keys, bytes, with_ttl, owner], biggest
    first."""
    groups: dict[str, list] = {}
    for name, size, has_ttl in keys:
        row = groups.setdefault(key_group(name), [key_group(name), 0, 0, 0,
                                                  "foreign" if is_foreign(name) else "app"])
        row[1] += 1
        row[2] += size
        row[3] += int(has_ttl)
    return sorted(groups.values(), key=lambda r: (-r[2], r[0]))


def usage(topology: Topology, sample: int = 5000) -> Outcome:
    """What fills Redis: memory against maxmemory, then the keys by pattern (a SCAN of
    at most `sample` keys, each sized with MEMORY USAGE), biggest first."""
    if not 1 <= sample <= 100_000:
        raise OpsError("--sample must be between 1 and 100000")
    conn = client(topology)
    try:
        memory = conn.info("memory")
        total = conn.dbsize()
        names: list[bytes] = []
        for key in conn.scan_iter(count=500):
            names.append(key)
            if len(names) >= sample:
                break
        seen = []
        for start in range(0, len(names), 500):  # pipelined: one round trip per 500 keys
            chunk = names[start:start + 500]
            pipe = conn.pipeline(transaction=False)
            for key in chunk:
                pipe.memory_usage(key)
                pipe.ttl(key)
            answers = pipe.execute()
            for i, key in enumerate(chunk):
                name = key.decode(errors="replace") if isinstance(key, bytes) else str(key)
                seen.append((name, int(answers[2 * i] or 0), int(answers[2 * i + 1]) >= 0))
    except redis.RedisError as exc:
        return redis_failed(topology, Outcome(title="Redis keys"), exc)
    finally:
        conn.close()
    used, limit = int(memory.get("used_memory", 0)), int(memory.get("maxmemory", 0))
    share = f"{used / limit:.0%} of maxmemory {limit / 2**20:.0f} MiB" if limit else \
        "no maxmemory"
    outcome = Outcome(title=f"Redis keys by pattern ({len(seen)} of {total} sampled; used "
                            f"{used / 2**20:.1f} MiB, {share}, policy "
                            f"{memory.get('maxmemory_policy', '?')})",
                      columns=["pattern", "keys", "bytes", "with_ttl", "owner"],
                      rows=group_keys(seen))
    foreign = [r for r in outcome.rows if r[4] == "foreign"]
    if foreign:
        outcome.note(f"{sum(r[1] for r in foreign)} key(s) ({sum(r[2] for r in foreign)} "
                     "bytes) are not the app's: python -m infra.ops cache-del --stack "
                     f"{topology.stack} --foreign --dry-run")
    return outcome


def client(topology: Topology, timeout_s: float = 2.0) -> redis.Redis:
    svc = one_instance(topology, "redis")
    try:
        return redis_client(topology, svc, timeout_s)
    except OSError as exc:
        raise unreadable_secret(topology, "redis", exc) from None


def redis_failed(topology: Topology, outcome: Outcome, exc: redis.RedisError) -> Outcome:
    """`outcome`, failed with what the stack's Redis answered."""
    outcome.fail(f"Redis at {one_instance(topology, 'redis').endpoint} failed: {exc}")
    return outcome


def delete_keys(topology: Topology, keys: list[str], pattern: str | None = None,
                max_keys: int = 1000, dry_run: bool = False, foreign: bool = False) -> Outcome:
    """DEL the named keys and, with `pattern`, the keys SCAN finds matching it (at most
    `max_keys`, so a careless `*` cannot wipe a production cache in one go); with
    `foreign`, every key that is not the app's own (`APP_KEY`), as bounded."""
    if not keys and not pattern and not foreign:
        raise OpsError("name the keys to delete (e.g. user:42) or pass --pattern 'user:*' "
                       "or --foreign")
    if pattern is not None and pattern.strip("*") == "" and not dry_run:
        raise OpsError(f"--pattern {pattern!r} matches every key: that is a cache flush, "
                       "not a poisoned key; use --dry-run to see what it would take, and "
                       "narrow the pattern")
    outcome = Outcome(title=f"{'would delete' if dry_run else 'deleted'} from Redis",
                      columns=["key", "result"])
    conn = client(topology)
    try:
        wanted = list(dict.fromkeys(keys))
        for match in ([pattern] if pattern is not None else []) + (["*"] if foreign else []):
            for key in conn.scan_iter(match=match, count=500):
                name = key.decode(errors="replace") if isinstance(key, bytes) else str(key)
                if match == "*" and not is_foreign(name):
                    continue
                if name not in wanted:
                    wanted.append(name)
                if len(wanted) > max_keys:
                    raise OpsError(f"--{'pattern ' + repr(match) if match != '*' else 'foreign'}"
                                   f" matches more than {max_keys} keys; narrow it or raise "
                                   "--max")
        for key in wanted:
            if dry_run:
                outcome.rows.append([key, "exists" if conn.exists(key) else "absent"])
            else:
                outcome.rows.append([key, "deleted" if conn.delete(key) else "absent"])
    except redis.RedisError as exc:
        redis_failed(topology, outcome, exc)
    finally:
        conn.close()
    return outcome


#: The name the app's Redis connections carry (app/civicpulse/core/cache.py,
#: `client_name`): any other client of this Redis is foreign.
APP_CLIENT_NAME = "civicpulse"


def foreign_idle_clients(clients: list[dict], idle_for_s: int) -> list[dict]:
    """CLIENT LIST entries that are not the app's and have been idle at least S (this
    command's own connection is busy, idle 0)."""
    return [c for c in clients
            if c.get("name") != APP_CLIENT_NAME and int(c.get("idle", 0)) >= idle_for_s]


def clients(topology: Topology, kill_foreign_idle_for: int | None = None,
            dry_run: bool = False) -> Outcome:
    """Redis' clients grouped by name and source address (count, max idle); with
    `kill_foreign_idle_for`, CLIENT KILL every client that is not the app's and has been
    idle at least that long (a leak holding maxclients' slots)."""
    if kill_foreign_idle_for is not None and kill_foreign_idle_for < 1:
        raise OpsError("--kill-foreign-idle-for must be at least 1 second")
    conn = client(topology)
    try:
        info = conn.info("clients")
        listed = conn.client_list()
        victims = ([] if kill_foreign_idle_for is None
                   else foreign_idle_clients(listed, kill_foreign_idle_for))
        killed = 0
        if victims and not dry_run:
            pipe = conn.pipeline(transaction=False)
            for entry in victims:
                pipe.client_kill_filter(_id=entry["id"])
            killed = sum(int(bool(r)) for r in pipe.execute(raise_on_error=False)
                         if not isinstance(r, Exception))
    except redis.RedisError as exc:
        return redis_failed(topology, Outcome(title="Redis clients"), exc)
    finally:
        conn.close()
    groups: dict[tuple[str, str], list[int]] = {}
    for entry in listed:
        key = (entry.get("name") or "(no name)", str(entry.get("addr", "?")).rsplit(":", 1)[0])
        groups.setdefault(key, []).append(int(entry.get("idle", 0)))
    outcome = Outcome(title=f"Redis clients: {info.get('connected_clients')} of maxclients "
                            f"{info.get('maxclients')}",
                      columns=["name", "address", "clients", "max_idle_s", "owner"],
                      rows=[[name, addr, len(idle), max(idle),
                             "app" if name == APP_CLIENT_NAME else "foreign"]
                            for (name, addr), idle in sorted(groups.items(),
                                                             key=lambda kv: -len(kv[1]))])
    if kill_foreign_idle_for is not None:
        outcome.note(f"{'would kill' if dry_run else 'killed'} "
                     f"{len(victims) if dry_run else killed} foreign client(s) idle >= "
                     f"{kill_foreign_idle_for}s")
    return outcome
