"""GameDay scenarios end to end against a deployed throwaway stack (`deployed_stack`,
tests/conftest.py): real faults, real alerts, real rollback, real reconciliation."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from gameday.cleanup import cleanup
from gameday.engine import run_gameday
from gameday.progress import Progress
from gameday.results import FALSIFIED, HELD, PLANNED, SKIPPED
from gameday.rollback_log import APPLIED, read_rollback_log, rollback_log_path
from infra.targets import nft
from infra.topology import REPO_ROOT

pytestmark = [pytest.mark.slow, pytest.mark.deploy]

#: Scenarios whose outcome does not depend on tuning: a missing alert or a lost write
#: here is a regression.
# Distinct from the main job's smoke (postgresql-crash, tasks.py SMOKE_SCENARIOS); the
# docker stage runs app-host-crash too, whose detection is checked from both sources here.
END_TO_END = ["database-disk-full", "app-host-crash", "redis-partition"]


@pytest.fixture(scope="module")
def gameday_run(deployed_stack, tmp_path_factory):
    reports = tmp_path_factory.mktemp("reports")
    return run_gameday(deployed_stack, END_TO_END, reports_dir=reports, progress=Progress())


def _result(run, scenario_id):
    return next(r for r in run.results if r.id == scenario_id)


@pytest.mark.parametrize("scenario_id", END_TO_END)
def test_scenario_ran_rolled_back_and_lost_nothing(gameday_run, scenario_id):
    r = _result(gameday_run, scenario_id)
    assert r.status in (HELD, FALSIFIED), f"{r.status}: {r.reason}"
    kinds = [e.kind for e in r.timeline.sorted()]
    for kind in ("steady_state_verified", "fault_injected", "fault_removed", "load_stopped"):
        assert kind in kinds
    checks = {c.name: c for c in r.checks}
    assert checks["fault rolled back"].passed
    rec = r.reconciliation
    assert rec is not None and rec.error is None
    assert rec.acknowledged > 50
    assert rec.lost_acknowledged_writes == 0, rec.lost_acknowledged[:5]
    assert rec.audit_mismatches == 0


@pytest.mark.parametrize("scenario_id", END_TO_END)
def test_hypothesis_holds(gameday_run, scenario_id):
    r = _result(gameday_run, scenario_id)
    failed = [f"{c.name}: expected {c.expected}, measured {c.measured}"
              for c in r.checks if not c.passed and not c.informational]
    assert r.status == HELD, failed or r.reason


def test_alerts_were_detected_through_both_sources(gameday_run):
    for scenario_id, alert in (("database-disk-full", "NodeFilesystemSpaceLow"),
                               ("app-host-crash", "AppHostDown")):
        r = _result(gameday_run, scenario_id)
        assert r.times.time_to_detect is not None, scenario_id
        seen = {(e.detail["source"], e.kind) for e in r.timeline.events
                if e.detail.get("alert") == alert}
        # The page itself must arrive through Alertmanager's webhook.
        assert ("webhook", "alert_firing") in seen, (scenario_id, seen)
        # Polling must have seen the alert too, at least while it was pending: with
        # group_wait 0 the webhook can start the runbook, which clears a full disk
        # before the next 1 s poll, so Prometheus' firing window may fall between polls
        # (CI run on 65ab48e). Pending lasts `for:` (2 s), longer than a poll interval.
        assert {("prometheus", "alert_pending"), ("prometheus", "alert_firing")} & seen, (
            scenario_id, seen)


def test_report_is_written(gameday_run):
    directory = gameday_run.report_dir
    journal = json.loads((directory / "journal.json").read_text())
    assert [s["id"] for s in journal["scenarios"]] == END_TO_END
    assert "<svg" in (directory / "report.html").read_text()
    suite = ET.parse(directory / "junit.xml").getroot()
    assert suite.attrib["tests"] == str(len(END_TO_END))
    assert "| failure type |" in (directory / "summary.md").read_text()


def test_stack_is_clean_and_healthy_afterwards(gameday_run, deployed_stack):
    assert read_rollback_log(deployed_stack.state_dir) is None
    assert not nft.table_exists(nft.table_for(deployed_stack.stack))
    report = cleanup(deployed_stack)
    assert report.ok, (report.problems, report.health)
    assert report.actions == []  # nothing was left to undo


def test_dry_run_plans_every_scenario_without_touching_the_stack(deployed_stack, tmp_path):
    run = run_gameday(deployed_stack, None, dry_run=True, reports_dir=tmp_path,
                      progress=Progress())
    assert {r.status for r in run.results} <= {PLANNED, SKIPPED}
    assert not rollback_log_path(deployed_stack.state_dir).exists()
    assert not nft.table_exists(nft.table_for(deployed_stack.stack))


def _engine(stack_file: Path, scenario: str, reports: Path) -> subprocess.Popen:
    code = ("import sys; from gameday.engine import run_gameday; "
            "from gameday.progress import Progress; from infra.topology import load_stack; "
            f"run = run_gameday(load_stack({str(stack_file)!r}), [{scenario!r}], "
            f"reports_dir=__import__('pathlib').Path({str(reports)!r}), progress=Progress()); "
            "sys.exit(run.exit_code)")
    return subprocess.Popen([sys.executable, "-c", code], cwd=REPO_ROOT)


def _wait_for_applied_fault(topology, proc, timeout=120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the engine ended before injecting"
        rollback_log = read_rollback_log(topology.state_dir) if rollback_log_path(
            topology.state_dir).exists() else None
        if rollback_log and any(e.state == APPLIED for e in rollback_log.entries):
            return
        time.sleep(0.5)
    proc.kill()
    raise AssertionError("no fault applied in time")


def test_sigterm_rolls_back_in_process(deployed_stack, itest_stack_file, tmp_path):
    proc = _engine(itest_stack_file, "redis-partition", tmp_path)
    _wait_for_applied_fault(deployed_stack, proc)
    assert nft.table_exists(nft.table_for(deployed_stack.stack))
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=120) == 130
    assert not nft.table_exists(nft.table_for(deployed_stack.stack))
    assert read_rollback_log(deployed_stack.state_dir) is None


def test_cleanup_undoes_what_a_killed_engine_left(deployed_stack, itest_stack_file, tmp_path):
    proc = _engine(itest_stack_file, "redis-partition", tmp_path)
    _wait_for_applied_fault(deployed_stack, proc)
    proc.send_signal(signal.SIGKILL)  # no rollback can run
    proc.wait(timeout=30)
    # The partition is still in place.
    assert nft.table_exists(nft.table_for(deployed_stack.stack))
    report = cleanup(deployed_stack)
    assert report.rollback_log_found
    assert not nft.table_exists(nft.table_for(deployed_stack.stack))
    assert report.ok, (report.problems, report.health)
