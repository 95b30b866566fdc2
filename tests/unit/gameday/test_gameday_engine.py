"""The engine end to end against a fake stack on loopback (no real services, no root)."""

from __future__ import annotations

import json
import os
import signal
import textwrap
import threading

import pytest
from gameday_fake_stack import FakeStack, FakeStackTarget

from gameday import database
from gameday.engine import run_gameday
from gameday.progress import Progress
from gameday.results import ERROR, FALSIFIED, HELD, PLANNED, REFUSED
from gameday.rollback_log import read_rollback_log

SCENARIO = """
id: redis-down
title: Redis down (fake stack)
hypothesis: The app degrades gracefully while Redis is down.
steady_state:
  settle_s: 5
  confirm_checks: 2
  interval_s: 0.2
  probes:
    - name: health
      http: {{service: nginx, path: /civicpulse/health/, timeout_s: 1}}
      tolerance: {{status: [200], json_field: status, json_in: [ok]}}
    - name: error ratio
      promql: {{query: 'sum(rate(x[10s]))'}}
      tolerance: {{max: 0.05, if_empty: zero}}
  load: {{max_error_rate: 0.05, max_p99_latency_ms: 1000, window_s: 1, min_requests: 3}}
load:
  users: 4
  before_s: 1
  after_s: 1
  think_time_ms: 10
  timeout_s: 2
  max_duration_s: 30
fault:
  kind: service_stop
  target: {{service: redis}}
  duration_s: {duration}
alerts:
  - {{name: RedisDown, deadline_s: 3, resolve_deadline_s: 5}}
runbook:
  path: {runbook}
  step_timeout_s: 5
recovery: {{deadline_s: 5, stable_s: 0.5}}
data_checks:
  min_success_rate_during: 0.9
stop_conditions: {{max_error_rate: 0.9, window_s: 1, for_s: 5}}
"""

RUNBOOK = textwrap.dedent("""\
    # RedisDown
    ```sh step=diagnose
    echo "diagnose $CP_ALERT_NAME on $CP_STACK"
    ```
    ```sh step=mitigate
    echo mitigate
    ```
    ```sh step=verify
    echo verify
    ```
    """)


@pytest.fixture
def fake(tmp_path, monkeypatch):
    stack = FakeStack(tmp_path)
    monkeypatch.setattr(database, "fetch_run_rows",
                        lambda topology, prefix, at=None: stack.state.rows(prefix))
    yield stack
    stack.close()


def run(fake, tmp_path, duration=2.0, **kwargs):
    scenarios = tmp_path / "scenarios"
    scenarios.mkdir(exist_ok=True)
    runbook = tmp_path / "RedisDown.md"
    runbook.write_text(RUNBOOK)
    (scenarios / "redis-down.yaml").write_text(
        SCENARIO.format(duration=duration, runbook=runbook).lstrip())
    target = FakeStackTarget(fake)
    result = run_gameday(fake.topology, ["redis-down"], reports_dir=tmp_path / "reports",
                         progress=Progress(), target=target, scenarios_dir=scenarios,
                         **kwargs)
    return result, target


def test_hypothesis_holds_end_to_end(fake, tmp_path):
    result, target = run(fake, tmp_path)
    (scenario,) = result.results
    assert scenario.status == HELD, (scenario.reason, [c for c in scenario.checks])
    assert result.exit_code == 0
    kinds = [e.kind for e in scenario.timeline.sorted()]
    for kind in ("steady_state_verified", "load_started", "fault_injected", "sli_breach",
                 "alert_firing", "runbook_step", "fault_removed", "steady_state_regained",
                 "alert_resolved", "load_stopped"):
        assert kind in kinds, kind
    sources = {e.detail.get("source") for e in scenario.timeline.events
               if e.kind == "alert_firing"}
    assert sources == {"prometheus", "webhook"}
    assert 0 <= scenario.times.time_to_detect <= 3
    assert scenario.times.time_to_recover is not None
    assert [r.step for r in scenario.runbook.results] == ["diagnose", "mitigate", "verify"]
    assert scenario.runbook.results[0].stdout == f"diagnose RedisDown on {fake.topology.source}\n"
    assert scenario.reconciliation.acknowledged > 10
    assert scenario.reconciliation.lost_acknowledged_writes == 0
    assert {"before", "during", "after"} <= set(scenario.phases)
    assert [c[0] for c in target.calls] == ["stop", "start"]
    assert read_rollback_log(fake.topology.state_dir) is None
    report = json.loads((result.report_dir / "journal.json").read_text())
    assert report["scenarios"][0]["status"] == "held"
    assert (result.report_dir / "report.html").read_text().count("<svg") >= 2


def test_planted_lost_writes_falsify_the_hypothesis(fake, tmp_path):
    fake.state.lose_writes_when_degraded = True
    result, _ = run(fake, tmp_path)
    (scenario,) = result.results
    assert scenario.status == FALSIFIED
    assert scenario.reconciliation.lost_acknowledged_writes > 0
    assert "no lost acknowledged writes" in scenario.reason
    assert scenario.score["score"] == 0.0
    assert result.exit_code == 1


def test_unhealthy_stack_is_refused_and_nothing_is_injected(fake, tmp_path):
    fake.state.healthy = False
    result, target = run(fake, tmp_path)
    (scenario,) = result.results
    assert scenario.status == REFUSED
    assert "steady state not met" in scenario.reason and "health" in scenario.reason
    assert target.calls == []
    assert result.exit_code == 1


def test_dry_run_changes_nothing(fake, tmp_path):
    result, target = run(fake, tmp_path, dry_run=True)
    (scenario,) = result.results
    assert scenario.status == PLANNED
    assert any("supervisorctl stop redis@cache" in p for p in scenario.plan)
    assert any("steady-state probe health: ok" in n for n in scenario.notes)
    assert target.calls == []
    assert not (fake.topology.state_dir / "gameday").exists()
    assert result.exit_code == 0


def test_sigint_during_the_fault_rolls_back(fake, tmp_path):
    # SIGINT arrives while Redis is held down; the engine must start it again.
    timer = threading.Timer(3.0, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        result, target = run(fake, tmp_path, duration=20)
    finally:
        timer.cancel()
    assert result.interrupted and result.exit_code == 130
    assert result.results[0].status == ERROR
    assert [c[0] for c in target.calls] == ["stop", "start"]
    assert not fake.state.redis_down
    assert read_rollback_log(fake.topology.state_dir) is None
    assert (result.report_dir / "summary.md").exists()
