"""Checks, verdict and resilience score from a timeline and measurements."""

from __future__ import annotations

import pytest

from gameday import timeline as tl
from gameday.reconcile import AuditRow, UserRow, WriteRecord, reconcile
from gameday.runbook_runner import RunbookResult, StepResult
from gameday.scenario import Scenario
from gameday.score import scenario_score
from gameday.verdict import evaluate, hypothesis_holds

SCENARIO = {
    "id": "redis-down", "title": "t", "hypothesis": "h",
    "steady_state": {"probes": [{"name": "h", "http": {"path": "/"},
                                 "tolerance": {"status": [200]}}]},
    "fault": {"kind": "service_stop", "target": {"service": "redis"}, "duration_s": 30},
    "alerts": [{"name": "RedisDown", "deadline_s": 15, "resolve_deadline_s": 60}],
    "runbook": {},
    "recovery": {"deadline_s": 30},
    "data_checks": {"min_success_rate_during": 0.9},
}


def scenario(**changes):
    data = {**SCENARIO, **changes}
    return Scenario.model_validate(data)


def run_timeline(firing_at=14.0, regained_at=43.0, resolved_at=50.0, stop=False):
    t = tl.Timeline()
    t.add(0.0, tl.LOAD_STARTED)
    t.add(10.0, tl.FAULT_INJECTED)
    t.add(11.0, tl.SLI_BREACH)
    if firing_at is not None:
        t.add(firing_at, tl.ALERT_FIRING, alert="RedisDown", source="prometheus")
    if stop:
        t.add(20.0, tl.STOP_CONDITION, reason="error rate 100% > 50% for 10s")
    t.add(40.0, tl.FAULT_REMOVED)
    if regained_at is not None:
        t.add(regained_at, tl.STEADY_STATE_REGAINED)
    if resolved_at is not None and firing_at is not None:
        t.add(resolved_at, tl.ALERT_RESOLVED, alert="RedisDown", source="prometheus")
    return t


def phases(during_rate=0.97):
    ok = int(during_rate * 100)
    return {"during": tl.PhaseStats(100, ok, 100 - ok, 0, during_rate, 5, 50, 10, {})}


def clean_reconciliation():
    return reconcile([WriteRecord("a", "a", 1, status=201, outcome="acknowledged", user_id=1)],
                     [UserRow(1, "a")], [AuditRow(1, "user.created", 1, "a")])


def runbook_ok():
    return RunbookResult("runbooks/RedisDown.md", True, ["diagnose"],
                         [StepResult("diagnose", 3, 15.0, 0.1, 0, False, 1, "", "")])


def checks_by_name(checks):
    return {c.name: c for c in checks}


def test_everything_as_promised_holds():
    checks = evaluate(scenario(), run_timeline(), phases(), clean_reconciliation(),
                      runbook_ok(), rolled_back=True)
    assert hypothesis_holds(checks), [c for c in checks if not c.passed]
    named = checks_by_name(checks)
    assert named["alert RedisDown fires"].measured == "4.0s"
    assert named["recovers within deadline"].measured.startswith("3.0s")


def test_late_alert_falsifies():
    checks = evaluate(scenario(), run_timeline(firing_at=30.0), phases(),
                      clean_reconciliation(), runbook_ok(), True)
    assert not hypothesis_holds(checks)
    assert not checks_by_name(checks)["alert RedisDown fires"].passed


def test_optional_alert_is_informational():
    s = scenario(alerts=[{"name": "RedisDown", "deadline_s": 15, "required": False}])
    checks = evaluate(s, run_timeline(firing_at=None), phases(), clean_reconciliation(),
                      runbook_ok(), True)
    assert hypothesis_holds(checks)
    assert checks_by_name(checks)["alert RedisDown fires"].informational


def test_slow_recovery_lost_write_stop_condition_and_degradation_falsify():
    assert not hypothesis_holds(evaluate(scenario(), run_timeline(regained_at=None),
                                         phases(), clean_reconciliation(), runbook_ok(), True))
    lost = reconcile([WriteRecord("a", "a", 1, status=201, outcome="acknowledged")], [], [])
    checks = evaluate(scenario(), run_timeline(), phases(), lost, runbook_ok(), True)
    assert not checks_by_name(checks)["no lost acknowledged writes"].passed
    checks = evaluate(scenario(), run_timeline(stop=True), phases(), clean_reconciliation(),
                      runbook_ok(), True)
    assert not checks_by_name(checks)["blast radius within stop conditions"].passed
    checks = evaluate(scenario(), run_timeline(), phases(0.5), clean_reconciliation(),
                      runbook_ok(), True)
    assert not checks_by_name(checks)["users served while the fault is active"].passed


def test_missing_runbook_is_reported_not_fatal_unless_required():
    missing = RunbookResult("runbooks/RedisDown.md", False, ["diagnose"],
                            problem="runbooks/RedisDown.md: runbook not found")
    checks = evaluate(scenario(), run_timeline(), phases(), clean_reconciliation(), missing,
                      True)
    assert hypothesis_holds(checks)
    assert checks_by_name(checks)["runbook executed"].informational
    s = scenario(runbook={"required": True})
    assert not hypothesis_holds(evaluate(s, run_timeline(), phases(), clean_reconciliation(),
                                         missing, True))


def test_rollback_not_complete_falsifies():
    checks = evaluate(scenario(), run_timeline(), phases(), clean_reconciliation(),
                      runbook_ok(), rolled_back=False)
    assert not checks_by_name(checks)["fault rolled back"].passed


def test_score_formula():
    s = scenario()
    perfect = scenario_score(s, run_timeline(), phases(1.0), clean_reconciliation())
    assert perfect == {"score": 100.0, "D": 1.0, "R": 1.0, "A": 1.0, "I": 1.0}
    # Alert 7.5 s late on a 15 s deadline: D = 0.5; recovery in time; 80% served.
    late = scenario_score(s, run_timeline(firing_at=32.5), phases(0.8), clean_reconciliation())
    assert late["D"] == pytest.approx(0.5)
    assert late["score"] == pytest.approx(100 * (0.35 * 0.5 + 0.35 * 1 + 0.3 * 0.8), abs=0.1)
    lost = reconcile([WriteRecord("a", "a", 1, status=201, outcome="acknowledged")], [], [])
    assert scenario_score(s, run_timeline(), phases(1.0), lost)["score"] == 0.0
