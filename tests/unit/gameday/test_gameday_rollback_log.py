"""The rollback log: on disk before every change; cleanup reads it and undoes."""

from __future__ import annotations

import asyncio
import json
import os

import pytest
from gameday_fakes import FakeTarget

from gameday.cleanup import cleanup
from gameday.faults import fault_class
from gameday.faults.base import FaultContext
from gameday.rollback_log import (
    APPLIED,
    INTENT,
    OLD_ROLLBACK_LOG_NAME,
    UNDONE,
    RollbackLog,
    read_rollback_log,
    rollback_log_path,
)
from gameday.scenario import FaultSpec
from infra.stack_lock import HOLDER_ENV, StackLock
from infra.stack_lock import StackBusy as RollbackLogBusy


def make_fault(topology, target, rollback_log, kind, service, duration=10, where=None, **params):
    spec = FaultSpec(kind=kind, target={"service": service, **(where or {})},
                     parameters=params, duration_s=duration)
    ctx = FaultContext(topology=topology, target=target, rollback_log=rollback_log, scenario_id="t",
                       run_id="r1")
    return fault_class(kind)(spec, ctx)


def test_record_is_on_disk_before_it_returns(topology):
    rollback_log = RollbackLog.create(topology.state_dir, "r1", topology.stack)
    entry = rollback_log.record("s", "service_stop", "redis stopped",
                                {"handler": "start_service", "host": "cache", "service": "redis"})
    on_disk = json.loads(rollback_log_path(topology.state_dir).read_text())
    assert on_disk["entries"][0]["undo"]["handler"] == "start_service"
    assert on_disk["entries"][0]["state"] == INTENT
    assert oct(os.stat(rollback_log_path(topology.state_dir)).st_mode & 0o777) == "0o600"
    rollback_log.mark(entry, UNDONE)
    assert rollback_log.finish() is True
    assert not rollback_log_path(topology.state_dir).exists()


def test_undo_needs_a_handler(topology):
    rollback_log = RollbackLog.create(topology.state_dir, "r1", topology.stack)
    with pytest.raises(ValueError):
        rollback_log.record("s", "x", "no handler", {"host": "cache"})


@pytest.mark.parametrize("kind, service, extra, mutation", [
    ("service_stop", "redis", {}, "stop"),
    ("process_hang", "postgresql", {}, "pause"),
    ("network_partition", "redis", {"from_services": ["app"]}, "nft_apply"),
    ("packet_loss", "postgresql", {"percent": 30}, "nft_apply"),
])
def test_fault_logs_before_it_changes_anything(topology, kind, service, extra, mutation):
    rollback_log = RollbackLog.create(topology.state_dir, "r1", topology.stack)
    target = FakeTarget(topology, rollback_log_path(topology.state_dir))
    fault = make_fault(topology, target, rollback_log, kind, service, **extra)
    asyncio.run(fault.inject())
    index = next(i for i, call in enumerate(target.calls) if call[0] == mutation)
    seen = target.rollback_log_at_call[index]
    assert seen, f"{mutation} happened with an empty rollback log"
    assert seen[0]["fault"] == kind and seen[0]["state"] == INTENT
    assert rollback_log.entries[0].state == APPLIED

    asyncio.run(fault.rollback())
    assert fault.fully_rolled_back
    assert rollback_log.finish()


def test_rollback_is_idempotent(topology):
    rollback_log = RollbackLog.create(topology.state_dir, "r1", topology.stack)
    target = FakeTarget(topology)
    fault = make_fault(topology, target, rollback_log, "service_stop", "redis")
    asyncio.run(fault.inject())
    asyncio.run(fault.rollback())
    asyncio.run(fault.rollback())
    assert [c[0] for c in target.calls].count("start") == 1


def test_all_instances_are_logged_then_stopped(topology):
    rollback_log = RollbackLog.create(topology.state_dir, "r1", topology.stack)
    target = FakeTarget(topology, rollback_log_path(topology.state_dir))
    fault = make_fault(topology, target, rollback_log, "service_stop", "app",
                       where={"all_instances": True})
    asyncio.run(fault.inject())
    first_stop = next(i for i, c in enumerate(target.calls) if c[0] == "stop")
    assert len(target.rollback_log_at_call[first_stop]) == 2  # both hosts recorded first
    assert target.stopped == {("app1", "app"), ("app2", "app")}


def test_cleanup_reads_the_rollback_log_a_killed_run_left(topology):
    # A run injects two faults and "dies" (no rollback): only the rollback log remains.
    rollback_log = RollbackLog.create(topology.state_dir, "dead-run", topology.stack)
    target = FakeTarget(topology)
    asyncio.run(make_fault(topology, target, rollback_log, "service_stop", "redis").inject())
    asyncio.run(make_fault(topology, target, rollback_log, "process_hang", "postgresql").inject())
    assert ("cache", "redis") in target.stopped and target.paused

    with pytest.raises(RollbackLogBusy, match="invoke gameday --cleanup"):
        RollbackLog.create(topology.state_dir, "next-run", topology.stack)

    fresh_target = FakeTarget(topology)  # a new process: nothing in memory
    fresh_target.stopped = set(target.stopped)
    fresh_target.paused = dict(target.paused)
    report = cleanup(topology, fresh_target, check_health=False)
    assert report.rollback_log_found and not report.problems
    # Undone newest first: resume PostgreSQL, then start Redis.
    mutating = [c[0] for c in fresh_target.calls if c[0] in ("start", "resume")]
    assert mutating == ["resume", "start"]
    assert not fresh_target.stopped and not fresh_target.paused
    assert read_rollback_log(topology.state_dir) is None  # everything undone: rollback log removed


def test_cleanup_undoes_a_log_left_under_the_old_name(topology):
    # A run of an older version, killed after it stopped Redis, wrote its rollback log
    # as <state>/gameday/journal.json; after the upgrade cleanup must still undo it.
    rollback_log = RollbackLog.create(topology.state_dir, "old-run", topology.stack)
    target = FakeTarget(topology)
    asyncio.run(make_fault(topology, target, rollback_log, "service_stop", "redis").inject())
    old = rollback_log_path(topology.state_dir).with_name(OLD_ROLLBACK_LOG_NAME)
    rollback_log_path(topology.state_dir).rename(old)

    with pytest.raises(RollbackLogBusy, match="invoke gameday --cleanup"):
        RollbackLog.create(topology.state_dir, "next-run", topology.stack)
    fresh_target = FakeTarget(topology)
    fresh_target.stopped = set(target.stopped)
    report = cleanup(topology, fresh_target, check_health=False)
    assert report.rollback_log_found and not report.problems
    assert not fresh_target.stopped
    assert not old.exists() and read_rollback_log(topology.state_dir) is None


def test_cleanup_sweeps_without_a_rollback_log(topology):
    target = FakeTarget(topology)
    target.network.append(object())  # an nft table left by a run whose rollback log was lost
    target.paused[("db", "postgresql")] = [1, 2]
    report = cleanup(topology, target, check_health=False)
    assert not report.rollback_log_found
    assert any("nft" in a for a in report.actions)
    assert any("SIGCONT" in a for a in report.actions)
    assert not target.network


def test_failed_undo_is_kept_for_cleanup(topology):
    rollback_log = RollbackLog.create(topology.state_dir, "r1", topology.stack)
    rollback_log.record("s", "x", "something odd", {"handler": "no-such-handler"})
    report = cleanup(topology, FakeTarget(topology), check_health=False)
    assert report.problems and "unknown undo handler" in report.problems[0]
    assert read_rollback_log(topology.state_dir).pending()


def test_stack_lock_is_exclusive(topology):
    with StackLock(topology.state_dir):
        with pytest.raises(RollbackLogBusy, match="another GameDay"):
            StackLock(topology.state_dir).acquire()
        with pytest.raises(RollbackLogBusy):
            cleanup(topology, FakeTarget(topology), check_health=False)
    StackLock(topology.state_dir).acquire().release()


def test_a_runbook_of_the_engine_holding_the_lock_goes_on_under_it(topology, monkeypatch):
    with StackLock(topology.state_dir):
        monkeypatch.delenv(HOLDER_ENV, raising=False)
        with pytest.raises(RollbackLogBusy, match="restore"):
            StackLock(topology.state_dir).acquire_unless_held_by_caller()
        monkeypatch.setenv(HOLDER_ENV, str(os.getpid() + 1))
        with pytest.raises(RollbackLogBusy):
            StackLock(topology.state_dir).acquire_unless_held_by_caller()
        monkeypatch.setenv(HOLDER_ENV, str(os.getpid()))
        StackLock(topology.state_dir).acquire_unless_held_by_caller().release()
    # Released by its holder: anyone may take it again.
    StackLock(topology.state_dir).acquire().release()


def test_a_lock_taken_before_the_with_statement_is_not_taken_twice(topology):
    with StackLock(topology.state_dir).acquire_unless_held_by_caller():
        with pytest.raises(RollbackLogBusy):
            StackLock(topology.state_dir).acquire()
    StackLock(topology.state_dir).acquire().release()
