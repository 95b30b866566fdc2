"""The transaction faults (long transaction, deadlocks) against a fake PostgreSQL:
journaled before the first connection opens, bounded, rolled back, cleaned up."""

from __future__ import annotations

import asyncio

import psycopg
import pytest
from gameday_fakes import FakeTarget, make_fault

from gameday.cleanup import cleanup
from gameday.fault_parameters import DeadlocksParams
from gameday.faults import transactions
from gameday.faults.base import UNDO_HANDLERS
from gameday.rollback_log import INTENT, UNDONE, read_rollback_log


class FakeLocks:
    """Advisory locks of one fake server: a waiter that closes a cycle is aborted."""

    def __init__(self) -> None:
        self.held: dict[int, object] = {}
        self.waiting: dict[object, int] = {}
        self.deadlocks = 0


class FakeConn:
    def __init__(self, locks: FakeLocks, pid: int, log: list[str]) -> None:
        self.locks, self.pid, self.log = locks, pid, log
        self.closed = False
        self.broken = False

    async def execute(self, sql: str, params: list | None = None):
        self.log.append(f"{self.pid}: {sql}")
        if self.broken and sql != "ROLLBACK":
            raise psycopg.OperationalError("terminating connection due to administrator command")
        if sql.startswith("SELECT pg_advisory_xact_lock"):
            key = params[0]
            for _ in range(100):
                holder = self.locks.held.get(key)
                if holder is None or holder is self:
                    self.locks.held[key] = self
                    self.locks.waiting.pop(self, None)
                    break
                self.locks.waiting[self] = key
                # The cycle: the holder of what I want waits for something I hold.
                wanted = self.locks.waiting.get(holder)
                if wanted is not None and self.locks.held.get(wanted) is self:
                    self.locks.waiting.pop(self, None)
                    self.locks.deadlocks += 1
                    # PostgreSQL aborts the victim's transaction: its locks go at once.
                    for held in [k for k, v in self.locks.held.items() if v is self]:
                        del self.locks.held[held]
                    raise psycopg.errors.DeadlockDetected("deadlock detected")
                await asyncio.sleep(0.01)
        if sql in ("ROLLBACK", "COMMIT"):
            for key in [k for k, v in self.locks.held.items() if v is self]:
                del self.locks.held[key]
        return FakeCursor(self.pid)

    async def close(self) -> None:
        self.closed = True


class FakeCursor:
    def __init__(self, pid: int) -> None:
        self.pid = pid

    async def fetchone(self):
        return (self.pid, 4242)


@pytest.fixture
def fake_pg(monkeypatch, topology):
    """Every connection the faults open, and what the rollback log held when each opened."""
    locks = FakeLocks()
    opened: list[FakeConn] = []
    log: list[str] = []
    log_at_connect: list[list] = []

    async def connect(fault, application_name):
        log_at_connect.append([dict(e.__dict__) for e in fault.ctx.rollback_log.entries])
        conn = FakeConn(locks, 9000 + len(opened), log)
        opened.append(conn)
        return conn

    monkeypatch.setattr(transactions, "_connect", connect)
    return locks, opened, log, log_at_connect


def make(topology, kind, duration=10, **params):
    return make_fault(topology, kind, "postgresql", duration=duration, **params)


def run_deadlocks(topology, duration, deadlocks):
    """Deadlocks one second apart: inject, let the background rounds end, roll back."""
    fault, _ = make(topology, "deadlocks", duration=duration, deadlocks=deadlocks, interval_s=1)

    async def run():
        await fault.inject()
        await asyncio.wait_for(fault._task, timeout=10)
        await fault.rollback()

    asyncio.run(run())
    return fault


@pytest.fixture
def undone(monkeypatch):
    """The terminate_backends undo, recorded instead of connecting to a database."""
    calls = []
    monkeypatch.setitem(UNDO_HANDLERS, "terminate_backends",
                        lambda ctx, undo: calls.append(dict(undo)) or "terminated 0")
    return calls


def test_long_transaction_is_journaled_before_it_connects_and_rolled_back(
        topology, fake_pg, undone):
    _locks, opened, log, log_at_connect = fake_pg
    fault, rollback_log = make(topology, "long_transaction", duration=55)

    async def run():
        await fault.inject()
        return await fault.rollback()

    done = asyncio.run(run())
    assert log_at_connect[0] and log_at_connect[0][0]["state"] == INTENT
    assert log_at_connect[0][0]["undo"]["handler"] == "terminate_backends"
    assert log == ["9000: BEGIN", "9000: SELECT pg_backend_pid(), txid_current()",
                   "9000: ROLLBACK"]
    assert opened[0].closed
    assert undone == [{"handler": "terminate_backends", "pids": [9000],
                       "application_name": "civicpulse-gameday-long-tx-r1"}]
    assert fault.fully_rolled_back and rollback_log.finish()
    assert done[0].startswith("undone: a transaction held open for 55s")


def test_long_transaction_ended_by_the_runbook_still_rolls_back(topology, fake_pg, undone):
    _locks, opened, _log, _ = fake_pg
    fault, _ = make(topology, "long_transaction")

    async def run():
        await fault.inject()
        opened[0].broken = True  # kill-idle-tx terminated the session meanwhile
        await fault.rollback()

    asyncio.run(run())
    assert fault.fully_rolled_back and opened[0].closed


def test_deadlocks_happen_as_many_times_as_asked_within_the_duration(
        topology, fake_pg, undone):
    locks, opened, _log, log_at_connect = fake_pg
    fault = run_deadlocks(topology, duration=3, deadlocks=3)
    assert locks.deadlocks == 3 and fault.detected == 3 and fault.rounds == 3
    assert len(opened) == 2 and all(c.closed for c in opened)
    assert all(entries and entries[0]["state"] == INTENT for entries in log_at_connect)
    assert not locks.held, "every round rolls both transactions back"
    assert undone[0]["pids"] == [9000, 9001]


def test_deadlock_rounds_never_outlast_the_fault(topology, fake_pg, undone):
    locks, _opened, _log, _ = fake_pg
    # 20 asked, one every 1 s, but the fault lasts 2 s: the first round plus at most one.
    run_deadlocks(topology, duration=2, deadlocks=20)
    assert 1 <= locks.deadlocks <= 2


def test_advisory_keys_differ_and_are_stable_per_run():
    first, second = transactions.advisory_keys("civicpulse-gameday-deadlock-r1")
    assert first != second
    assert (first, second) == transactions.advisory_keys("civicpulse-gameday-deadlock-r1")
    assert transactions.advisory_keys("civicpulse-gameday-deadlock-r2") != (first, second)
    assert all(-2**63 <= k < 2**63 for k in (first, second))


def test_deadlock_parameters_are_bounded():
    with pytest.raises(ValueError):
        DeadlocksParams(deadlocks=0)
    with pytest.raises(ValueError):
        DeadlocksParams(deadlocks=21)
    assert DeadlocksParams().deadlocks == 1


@pytest.mark.parametrize("kind", ["long_transaction", "deadlocks"])
def test_only_postgresql_is_a_target(topology, kind):
    fault, _ = make_fault(topology, kind, "redis")
    assert fault.preflight() == [f"{kind} targets postgresql, not redis"]


def test_cleanup_ends_the_sessions_a_killed_run_left(topology, fake_pg, undone):
    fault, _ = make(topology, "long_transaction")
    asyncio.run(fault.inject())  # and the engine is SIGKILLed: no rollback
    report = cleanup(topology, FakeTarget(topology), check_health=False)
    assert undone and undone[0]["application_name"] == "civicpulse-gameday-long-tx-r1"
    assert any("transaction held open" in a for a in report.actions)
    assert read_rollback_log(topology.state_dir) is None or all(
        e.state == UNDONE for e in read_rollback_log(topology.state_dir).entries)


# --- direct_connections ---------------------------------------------------------------------

@pytest.mark.parametrize("current, maximum, fill, needed", [
    (13, 100, 0.85, 72),   # the lab: 85 of 100
    (90, 100, 0.85, 0),    # already there: nothing opened
    (10, 100, 0.99, 87),   # never into the 3 superuser-reserved slots
])
def test_direct_connections_needed(current, maximum, fill, needed):
    assert transactions.connections_needed(current, maximum, fill) == needed


def test_direct_connections_are_journaled_first_bounded_and_closed(
        topology, fake_pg, undone, monkeypatch):
    _locks, opened, _log, log_at_connect = fake_pg

    async def fetch_counts(self):
        return (13, 100) if self.pid == 9000 else (self.pid, 0)

    monkeypatch.setattr(FakeCursor, "fetchone", fetch_counts)
    fault, rollback_log = make(topology, "direct_connections", duration=45, fill=0.85)
    asyncio.run(fault.inject())
    assert len(opened) == 1 + 72  # the probe session, then 72 more: 85 of 100
    assert all(entries and entries[0]["state"] == INTENT for entries in log_at_connect)
    assert rollback_log.entries[0].undo["application_name"] == "civicpulse-gameday-direct-r1"
    asyncio.run(fault.rollback())
    assert all(c.closed for c in opened) and fault.fully_rolled_back


def test_kill_direct_clients_spares_pgbouncers_backends_and_busy_sessions():
    from infra.ops.postgresql import direct_candidates

    sessions = [(1, "civicpulse", "", "idle", 60),        # PgBouncer's: spared
                (2, "civicpulse", "gd", "idle", 30),       # direct, idle: terminated
                (3, "civicpulse", "gd", "active", 30),     # running a statement: spared
                (4, "civicpulse", "gd", "idle", 1),        # just used: spared
                (5, "civicpulse", "psql", "idle in transaction", 99)]  # kill-idle-tx's
    assert [r[0] for r in direct_candidates(sessions, {1}, 2)] == [2]
