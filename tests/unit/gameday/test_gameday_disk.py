"""The disk_full fault: balloon size, rollback_log first, rollback and cleanup of the balloon.

No mount here (tests/integration/test_gameday_mechanics.py fills real volumes): the
volume is a directory and statvfs is faked, so only the fault's own logic runs.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest
from gameday_fakes import FakeTarget

from gameday.cleanup import cleanup
from gameday.faults import disk, fault_class
from gameday.faults.base import FaultContext, UndoContext, run_undo
from gameday.rollback_log import INTENT, RollbackLog, read_rollback_log, rollback_log_path
from gameday.scenario import FaultSpec
from infra.paths import host_dir

MiB = 2**20


def fake_statvfs(total_mb: float, bavail_mb: float, bfree_mb: float | None = None):
    frsize = 4096
    blocks = int(total_mb * MiB) // frsize
    bavail = int(bavail_mb * MiB) // frsize
    bfree = int((bfree_mb if bfree_mb is not None else bavail_mb) * MiB) // frsize
    return os.statvfs_result((frsize, frsize, blocks, bfree, bavail, 1000, 900, 900, 0, 255))


def make_disk_fault(topology, rollback_log, **params):
    spec = FaultSpec(kind="disk_full", target={"service": "postgresql"}, parameters=params,
                     duration_s=30)
    ctx = FaultContext(topology=topology, target=FakeTarget(topology), rollback_log=rollback_log,
                       scenario_id="database-disk-full", run_id="r1")
    return fault_class("disk_full")(spec, ctx)


@pytest.fixture
def volume(topology, monkeypatch) -> Path:
    """PostgreSQL's volume as the role lays it out, with 3 MiB left for the service
    (of 1 GiB; 50 MiB more reserved for root)."""
    mount = host_dir(topology, "db") / "postgresql" / "volume"
    (mount / "data").mkdir(parents=True)
    monkeypatch.setattr(disk, "mount_point", lambda path: mount)
    monkeypatch.setattr(disk.os, "statvfs", lambda path: fake_statvfs(1024, 3, 53))
    return mount


def test_balloon_takes_what_unprivileged_users_may_still_write():
    st = fake_statvfs(1024, bavail_mb=100, bfree_mb=151)
    assert disk.balloon_bytes(st, leave_mb=0) == 100 * MiB  # root's reserve stays
    assert disk.balloon_bytes(st, leave_mb=8) == 92 * MiB
    assert disk.balloon_bytes(st, leave_mb=500) == 0


def test_default_path_is_postgresql_data_on_its_volume(topology):
    rollback_log = RollbackLog.create(topology.state_dir, "r1", topology.stack)
    fault = make_disk_fault(topology, rollback_log)
    assert fault.path == host_dir(topology, "db") / "postgresql" / "volume" / "data"


def test_a_stack_without_a_data_volume_is_skipped_with_the_setting_to_change(topology):
    rollback_log = RollbackLog.create(topology.state_dir, "r1", topology.stack)
    (problem,) = make_disk_fault(topology, rollback_log).preflight()
    assert "sizing.postgresql.data_volume_mb" in problem


def test_a_big_filesystem_is_refused(topology, monkeypatch):
    rollback_log = RollbackLog.create(topology.state_dir, "r1", topology.stack)
    data = host_dir(topology, "db") / "postgresql" / "volume" / "data"
    data.mkdir(parents=True)
    monkeypatch.setattr(disk.os, "statvfs", lambda path: fake_statvfs(200 * 1024, 100 * 1024))
    (problem,) = make_disk_fault(topology, rollback_log).preflight()
    assert "not on a dedicated size-limited volume" in problem


def test_balloon_is_logged_before_it_exists_and_rolled_back(topology, volume, monkeypatch):
    rollback_log = RollbackLog.create(topology.state_dir, "r1", topology.stack)
    fault = make_disk_fault(topology, rollback_log)
    balloon = volume / disk.BALLOON
    seen = {}
    fill = disk.DiskFull._fill

    def spy(self, path):
        seen["exists"] = path.exists()
        on_disk = json.loads(rollback_log_path(topology.state_dir).read_text())
        seen["rollback_log"] = on_disk["entries"]
        return fill(self, path)

    monkeypatch.setattr(disk.DiskFull, "_fill", spy)
    asyncio.run(fault.inject())
    assert seen["exists"] is False
    (entry,) = seen["rollback_log"]
    assert entry["state"] == INTENT
    assert entry["undo"] == {"handler": "remove_file", "path": str(balloon)}
    assert balloon.stat().st_size == 3 * MiB
    assert oct(balloon.stat().st_mode & 0o777) == "0o600"

    asyncio.run(fault.rollback())
    assert not balloon.exists()
    asyncio.run(fault.rollback())  # idempotent
    assert fault.fully_rolled_back and rollback_log.finish()


def test_cleanup_removes_the_balloon_a_killed_run_left(topology, volume):
    rollback_log = RollbackLog.create(topology.state_dir, "dead-run", topology.stack)
    asyncio.run(make_disk_fault(topology, rollback_log).inject())  # and the engine dies
    balloon = volume / disk.BALLOON
    assert balloon.exists()
    report = cleanup(topology, FakeTarget(topology), check_health=False)
    assert not balloon.exists() and not report.problems
    assert any("removed" in a and str(balloon) in a for a in report.actions)
    assert read_rollback_log(topology.state_dir) is None


def test_cleanup_sweeps_a_balloon_without_a_rollback_log(topology, volume):
    balloon = volume / disk.BALLOON
    balloon.write_bytes(b"\0" * 1024)
    report = cleanup(topology, FakeTarget(topology), check_health=False)
    assert not balloon.exists()
    assert f"sweep: removed {balloon}" in report.actions


def test_undo_refuses_to_delete_anything_but_a_balloon(topology, tmp_path):
    precious = tmp_path / "PG_VERSION"
    precious.write_text("15\n")
    ctx = UndoContext(topology, FakeTarget(topology))
    with pytest.raises(ValueError, match="not a GameDay balloon"):
        run_undo(ctx, {"handler": "remove_file", "path": str(precious)})
    assert precious.exists()
