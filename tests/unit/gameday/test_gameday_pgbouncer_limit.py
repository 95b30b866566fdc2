"""pgbouncer_client_limit: the limit it picks, the file it rewrites (and only that
line), journaled with the original text first, restored by rollback, cleanup and the
log-less sweep."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest
from gameday_fakes import FakeTarget, make_fault

from gameday.cleanup import cleanup
from gameday.fault_parameters import PgbouncerClientLimitParams
from gameday.faults import config_file, pgbouncer_limit
from gameday.rollback_log import INTENT, rollback_log_path

INI = """;; managed
[pgbouncer]
pool_mode = transaction
;; Pool sizes (from the stack's sizing).
max_client_conn = 2000
default_pool_size = 20
%include /x/listen.ini
"""


@pytest.fixture
def ini(topology):
    path = pgbouncer_limit.config_path(topology, topology.one("pgbouncer"))
    path.parent.mkdir(parents=True)
    path.write_text(INI)
    os.chmod(path, 0o640)
    return path


def make(topology, target, **params):
    return make_fault(topology, "pgbouncer_client_limit", "pgbouncer", target, duration=60,
                      **params)


def sighups(target):
    return [c for c in target.calls if c[0] == "signal" and c[2] == signal.SIGHUP]


@pytest.mark.parametrize("used, fill, limit", [
    (17, 0.85, 20),   # the lab: 17 / 20 = 0.85 > 0.8
    (5, 0.85, 6),     # few clients: one more may still connect
    (0, 0.85, 1),
    (100, 0.9, 111),
])
def test_the_lowered_limit_puts_the_clients_above_the_alert_threshold(used, fill, limit):
    assert pgbouncer_limit.lowered_limit(used, fill) == limit
    if used >= 5:
        assert used / limit > 0.8


def test_only_the_max_client_conn_line_changes():
    lowered = pgbouncer_limit.with_limit(INI, 20)
    assert pgbouncer_limit.configured_limit(lowered) == 20
    assert lowered.replace("max_client_conn = 20\n", "max_client_conn = 2000\n") == INI
    with pytest.raises(ValueError, match="found 0"):
        pgbouncer_limit.with_limit("[pgbouncer]\n", 20)
    with pytest.raises(ValueError, match="found 2"):
        pgbouncer_limit.with_limit(INI + "max_client_conn = 5\n", 20)
    with pytest.raises(ValueError):
        PgbouncerClientLimitParams(fill=0.5)


def test_the_original_is_journaled_before_the_file_changes_then_restored(
        topology, ini, monkeypatch, log_at_write):
    target = FakeTarget(topology, rollback_log_path(topology.state_dir))
    fault, rollback_log = make(topology, target)
    monkeypatch.setattr(fault, "_used_clients", lambda: 17)
    written = log_at_write(config_file)
    asyncio.run(fault.inject())
    entry = written[0]
    assert entry.state == INTENT and entry.undo["content"] == INI
    assert entry.undo["handler"] == "restore_pgbouncer_config"
    assert pgbouncer_limit.configured_limit(ini.read_text()) == 20
    assert oct(ini.stat().st_mode & 0o777) == "0o640"
    assert len(sighups(target)) == 1

    asyncio.run(fault.rollback())
    assert ini.read_text() == INI and len(sighups(target)) == 2
    assert fault.fully_rolled_back and rollback_log.finish()


def test_a_file_it_cannot_edit_is_left_alone(topology, ini, monkeypatch):
    ini.write_text("[pgbouncer]\n")
    target = FakeTarget(topology)
    fault, rollback_log = make(topology, target)
    monkeypatch.setattr(fault, "_used_clients", lambda: 17)
    with pytest.raises(ValueError, match="found 0"):
        asyncio.run(fault.inject())
    assert rollback_log.entries == [] and not sighups(target)


def test_a_stack_without_the_file_is_skipped(topology):
    fault, _ = make(topology, FakeTarget(topology))
    assert "does not exist" in fault.preflight()[0]


def test_cleanup_restores_what_a_killed_run_left(topology, ini, monkeypatch):
    target = FakeTarget(topology)
    fault, _ = make(topology, target)
    monkeypatch.setattr(fault, "_used_clients", lambda: 17)
    asyncio.run(fault.inject())  # then SIGKILL
    report = cleanup(topology, target, check_health=False)
    assert ini.read_text() == INI
    assert any("max_client_conn of pgbouncer@pool lowered to 20" in a for a in report.actions)
    assert not rollback_log_path(topology.state_dir).exists()


def test_the_sweep_puts_the_stack_configs_limit_back_without_a_log(topology, ini):
    ini.write_text(pgbouncer_limit.with_limit(INI, 20))
    target = FakeTarget(topology)
    report = cleanup(topology, target, check_health=False)
    assert pgbouncer_limit.configured_limit(ini.read_text()) == \
        topology.sizing.pgbouncer.max_client_conn
    assert any("max_client_conn 20 → 2000 (stack config), SIGHUP" in a for a in report.actions)
    assert len(sighups(target)) == 1
    # A file that already says what the stack config says is not touched again.
    cleanup(topology, target, check_health=False)
    assert len(sighups(target)) == 1
