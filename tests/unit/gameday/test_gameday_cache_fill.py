"""redis_fill against a fake Redis: journaled before the first write, bounded, TTL on
every key, rolled back by prefix, swept by cleanup; and the ops side that finds and
deletes foreign keys."""

from __future__ import annotations

import asyncio
import dataclasses
import fnmatch

import pytest
import redis
from gameday_fakes import FakeTarget, make_fault

from gameday import cleanup as cleanup_module
from gameday.cleanup import cleanup
from gameday.faults import cache_fill
from gameday.rollback_log import INTENT, read_rollback_log, rollback_log_path
from infra.ops import cache


class FakeRedis:
    """Just what the fault, the undo, the sweep and the ops commands call."""

    def __init__(self, maxmemory: int = 128 * 2**20, base: int = 3 * 2**20,
                 grows: bool = True, log_path=None) -> None:
        self.maxmemory, self.base, self.grows = maxmemory, base, grows
        self.data: dict[str, tuple[bytes, int | None]] = {}
        self.log_path = log_path
        self.log_at_first_set = None
        self.closed = 0

    # fault
    def config_get(self, name):
        return {"maxmemory": str(self.maxmemory)}

    def info(self, section):
        used = self.base + (sum(len(v) for v, _ in self.data.values()) if self.grows else 0)
        return {"used_memory": used, "maxmemory": self.maxmemory,
                "maxmemory_policy": "allkeys-lru"}

    def pipeline(self, transaction=False):
        return FakePipeline(self)

    def set(self, key, value, ex=None):
        if self.log_at_first_set is None and self.log_path is not None:
            self.log_at_first_set = read_rollback_log(self.log_path)
        self.data[key] = (value, ex)

    # undo, sweep, ops
    def scan(self, cursor=0, match="*", count=10):
        keys = sorted(k for k in self.data if fnmatch.fnmatchcase(k, match))
        return 0, [k.encode() for k in keys]

    def scan_iter(self, match="*", count=10):
        return iter(self.scan(match=match)[1])

    def unlink(self, *keys):
        return sum(self.data.pop(k.decode(), None) is not None for k in keys)

    def delete(self, key):
        return int(self.data.pop(key, None) is not None)

    def exists(self, key):
        return int(key in self.data)

    def dbsize(self):
        return len(self.data)

    def memory_usage(self, key):
        return len(self.data[key.decode()][0])

    def ttl(self, key):
        return self.data[key.decode()][1] or -1

    def close(self):
        self.closed += 1


class FakePipeline:
    def __init__(self, conn: FakeRedis) -> None:
        self.conn, self.calls = conn, []

    def __getattr__(self, name):
        def queue(*args, **kwargs):
            self.calls.append((name, args, kwargs))
        return queue

    def execute(self):
        return [getattr(self.conn, name)(*args, **kwargs) for name, args, kwargs in self.calls]


@pytest.fixture
def fake_redis(monkeypatch, topology):
    conn = FakeRedis(log_path=topology.state_dir)
    for module in (cache_fill, cleanup_module):
        monkeypatch.setattr(module, "redis_client", lambda *_a, **_k: conn)
    monkeypatch.setattr(cache, "client", lambda *_a, **_k: conn)
    return conn


def make(topology, **params):
    return make_fault(topology, "redis_fill", "redis", duration=40, **params)


def test_fill_is_journaled_first_reaches_its_goal_and_every_key_expires(topology, fake_redis):
    fault, rollback_log = make(topology, fill_percent=95, value_kb=1024)
    asyncio.run(fault.inject())
    first = fake_redis.log_at_first_set.entries[0]
    assert first.state == INTENT and first.undo == {
        "handler": "redis_delete_prefix", "prefix": "civicpulse-gameday:lab:fill:r1:"}
    used = fake_redis.info("memory")["used_memory"]
    assert used >= 0.95 * fake_redis.maxmemory
    assert used < 0.95 * fake_redis.maxmemory + 8 * 2**20, "stops within one batch of the goal"
    assert all(ttl == 40 + cache_fill.TTL_MARGIN_S for _v, ttl in fake_redis.data.values())

    asyncio.run(fault.rollback())
    assert fake_redis.data == {} and fault.fully_rolled_back and rollback_log.finish()


def test_fill_is_bounded_when_redis_frees_memory_as_fast_as_we_write(topology, fake_redis):
    fake_redis.grows = False  # used_memory never rises (evictions, or a lying INFO)
    fault, _ = make(topology, fill_percent=95, value_kb=1024)
    asyncio.run(fault.inject())
    assert len(fake_redis.data) == cache_fill.fill_plan(fake_redis.maxmemory, 2**20)
    assert len(fake_redis.data) <= 1.1 * 128 + 1


def test_redis_without_maxmemory_is_refused(topology, fake_redis):
    fault, _ = make(topology)
    fake_redis.maxmemory = 0
    with pytest.raises(RuntimeError, match="without maxmemory"):
        asyncio.run(fault.inject())
    assert fake_redis.data == {}
    sizing = topology.sizing.model_copy(update={
        "redis": topology.sizing.redis.model_copy(update={"maxmemory_mb": 0})})
    unsized = dataclasses.replace(topology, sizing=sizing)
    fault.ctx.topology = unsized
    assert "needs sizing.redis.maxmemory_mb" in fault.preflight()[0]


def test_delete_prefix_refuses_anything_but_a_gameday_prefix(fake_redis):
    fake_redis.data = {"user:1": (b"u", 60), "civicpulse-gameday:lab:fill:r1:0": (b"x", 60),
                       "civicpulse-gameday:other:fill:r9:0": (b"x", 60)}
    for bad in ("user:", "", "civicpulse-gameday:", "*"):
        with pytest.raises(ValueError):
            cache_fill.delete_prefix(fake_redis, bad)
    assert cache_fill.delete_prefix(fake_redis, cache_fill.stack_prefix("lab")) == 1
    assert set(fake_redis.data) == {"user:1", "civicpulse-gameday:other:fill:r9:0"}


def test_cleanup_deletes_the_fill_a_killed_run_left_and_sweeps_without_a_log(
        topology, fake_redis):
    fault, _ = make(topology)
    asyncio.run(fault.inject())  # then SIGKILL: no rollback
    fake_redis.data["user:7"] = (b"u", 60)
    report = cleanup(topology, FakeTarget(topology), check_health=False)
    assert set(fake_redis.data) == {"user:7"}
    assert any("filler keys under civicpulse-gameday:lab:fill:r1:" in a for a in report.actions)
    assert not rollback_log_path(topology.state_dir).exists()

    fake_redis.data["civicpulse-gameday:lab:fill:r2:3"] = (b"x", 60)  # no log at all
    report = cleanup(topology, FakeTarget(topology), check_health=False)
    assert "sweep: deleted 1 GameDay filler key(s) from Redis" in report.actions
    assert set(fake_redis.data) == {"user:7"}


def test_cleanup_sweep_tolerates_an_unreachable_redis(topology, monkeypatch):
    def down(*_a, **_k):
        raise redis.ConnectionError("Connection refused")

    monkeypatch.setattr(cleanup_module, "redis_client", down)
    report = cleanup(topology, FakeTarget(topology), check_health=False)
    assert not report.problems
    assert any("Redis not reachable" in a for a in report.actions)


# --- the runbook's side: infra.ops cache-keys and cache-del --foreign -----------------------

def test_keys_group_by_pattern_and_owner():
    assert cache.key_group("user:42") == "user:*"
    assert cache.key_group("civicpulse-gameday:lab:fill:r1:7") == "civicpulse-gameday:lab:fill:r1:*"
    assert cache.key_group("lonely") == "lonely"
    assert not cache.is_foreign("user:42")
    assert cache.is_foreign("user:42:extra") and cache.is_foreign("users:1")
    rows = cache.group_keys([("user:1", 250, True), ("user:2", 250, True),
                             ("tmp:a", 2**20, False)])
    assert rows == [["tmp:*", 1, 2**20, 0, "foreign"], ["user:*", 2, 500, 2, "app"]]


def test_cache_keys_shows_the_foreign_filler_first(topology, fake_redis):
    fake_redis.data = {"user:1": (b"u" * 200, 60),
                       **{f"civicpulse-gameday:lab:fill:r1:{n}": (b"x" * 4096, 160)
                          for n in range(3)}}
    outcome = cache.usage(topology)
    assert outcome.rows[0] == ["civicpulse-gameday:lab:fill:r1:*", 3, 3 * 4096, 3, "foreign"]
    assert "3 key(s) (12288 bytes) are not the app's" in outcome.notes[0]
    with pytest.raises(cache.OpsError, match="--sample"):
        cache.usage(topology, sample=0)


def test_cache_del_foreign_keeps_the_apps_keys_and_is_bounded(topology, fake_redis):
    fake_redis.data = {"user:1": (b"u", 60), "user:2": (b"u", 60),
                       **{f"tmp:{n}": (b"x", None) for n in range(5)}}
    dry = cache.delete_keys(topology, [], foreign=True, dry_run=True)
    assert len(dry.rows) == 5 and len(fake_redis.data) == 7
    with pytest.raises(cache.OpsError, match="--foreign matches more than 4 keys"):
        cache.delete_keys(topology, [], foreign=True, max_keys=4)
    done = cache.delete_keys(topology, [], foreign=True)
    assert sorted(r[0] for r in done.rows) == [f"tmp:{n}" for n in range(5)]
    assert set(fake_redis.data) == {"user:1", "user:2"}
