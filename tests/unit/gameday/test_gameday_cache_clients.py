"""redis_connection_flood against a fake Redis: journaled before the first connection,
bounded by maxclients - headroom, the burst refused past the limit and closed, rolled
back; the runbook's side (cache-clients) kills only foreign idle clients."""

from __future__ import annotations

import asyncio

import pytest
import redis
from gameday_fakes import FakeTarget, make_fault

from gameday.faults import cache_clients
from gameday.faults.base import UndoContext, run_undo
from gameday.rollback_log import INTENT, read_rollback_log
from infra.ops import cache


class FakeServer:
    def __init__(self, maxclients=50, connected=10):
        self.maxclients, self.connected = maxclients, connected
        self.refused = 0
        self.killed: list[str] = []
        self.log_at_first_connect = None


class FakeConnection:
    server: FakeServer
    state_dir = None

    def __init__(self, **kwargs):
        self.name = kwargs["client_name"]
        self.open = False

    def connect(self):
        if self.server.log_at_first_connect is None:
            self.server.log_at_first_connect = read_rollback_log(self.state_dir)
        if self.server.connected >= self.server.maxclients:
            self.server.refused += 1
            raise redis.ConnectionError("max number of clients reached")
        self.server.connected += 1
        self.open = True

    def disconnect(self):
        if self.open:
            self.server.connected -= 1
            self.open = False


class FakeAdmin:
    def __init__(self, server, listed=()):
        self.server, self.listed = server, list(listed)

    def config_get(self, name):
        return {"maxclients": str(self.server.maxclients)}

    def info(self, section):
        return {"connected_clients": self.server.connected}

    def client_list(self):
        return self.listed

    def client_kill_filter(self, _id):
        self.server.killed.append(_id)

    def close(self):
        pass


@pytest.fixture
def server(monkeypatch, topology):
    srv = FakeServer()
    FakeConnection.server, FakeConnection.state_dir = srv, topology.state_dir
    monkeypatch.setattr(redis, "Connection", FakeConnection)
    monkeypatch.setattr(cache_clients, "stack_secret", lambda *_a: "pw")
    monkeypatch.setattr(cache_clients, "redis_client", lambda *_a, **_k: FakeAdmin(srv))
    return srv


def test_flood_leaves_headroom_gets_refused_and_rolls_back(topology, server):
    fault, rollback_log = make_fault(topology, "redis_connection_flood", "redis", duration=40,
                                     headroom=3, burst=2)
    asyncio.run(fault.inject())
    first = server.log_at_first_connect.entries[0]
    assert first.state == INTENT and first.undo == {"handler": "kill_redis_clients",
                                                    "name": "civicpulse-gameday-flood-r1"}
    assert len(fault._held) == 50 - 3 - 10
    assert server.refused == 2, "the burst's tries past maxclients are refused"
    assert server.connected == 47, "the burst's connections that got in are closed"
    asyncio.run(fault.rollback())
    assert server.connected == 10 and fault.fully_rolled_back and rollback_log.finish()


def test_flood_size_never_negative():
    assert cache_clients.flood_size(1000, 12, 3) == 985
    assert cache_clients.flood_size(10, 12, 3) == 0


def test_undo_kills_only_clients_with_the_runs_name(topology, server, monkeypatch):
    listed = [{"id": "1", "name": "civicpulse"}, {"id": "2", "name": "civicpulse-gameday-flood-r1"},
              {"id": "3", "name": "civicpulse-gameday-flood-r2"}]
    monkeypatch.setattr(cache_clients, "redis_client",
                        lambda *_a, **_k: FakeAdmin(server, listed))
    ctx = UndoContext(topology, FakeTarget(topology))
    message = run_undo(ctx, {"handler": "kill_redis_clients",
                             "name": "civicpulse-gameday-flood-r1"})
    assert server.killed == ["2"] and "killed 1" in message
    with pytest.raises(ValueError):
        run_undo(ctx, {"handler": "kill_redis_clients", "name": "civicpulse"})


def test_cache_clients_kills_foreign_idle_clients_only():
    listed = [{"id": "1", "name": "civicpulse", "idle": "300"},
              {"id": "2", "name": "civicpulse-gameday-flood-r1", "idle": "5"},
              {"id": "3", "name": "", "idle": "0"},          # this command's connection
              {"id": "4", "name": "leaker", "idle": "1"}]     # still busy
    assert [c["id"] for c in cache.foreign_idle_clients(listed, 2)] == ["2"]
