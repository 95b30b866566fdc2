"""GameDay progress: a live view on a terminal, one plain line per event elsewhere."""

from __future__ import annotations

import io

from gameday.progress import LiveProgress, PlainProgress, progress_for
from gameday.reconcile import Reconciliation
from gameday.results import FALSIFIED, HELD, ScenarioResult, verdict_line
from gameday.timeline import RecoveryTimes


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_the_live_view_anything_else_plain_lines():
    assert isinstance(progress_for(Tty()), LiveProgress)
    plain = progress_for(io.StringIO())
    assert isinstance(plain, PlainProgress)


def test_plain_progress_prints_scenario_start_and_each_event_once():
    out = io.StringIO()
    progress = PlainProgress(out)
    progress.update(index="[1/2]")
    progress.update(scenario="redis-down", phase="preflight")
    progress.update(phase="before", t=3.0, sent=100, ok=100)   # counters: no line
    progress.update(scenario="redis-down")                      # same scenario: no line
    progress.event("steady state verified", 2.5)
    progress.event("alert firing alert=RedisDown source=webhook", 14.25)
    progress.event("runbook step step=mitigate line=40 exit=0", 16.0)
    lines = out.getvalue().splitlines()
    assert len(lines) == 4
    # HH:MM:SS, then where we are, then what happened (at the event's own time).
    assert lines[0][8:] == " [1/2] redis-down: scenario started"
    assert lines[1][8:] == " [1/2] redis-down t=2.5s: steady state verified"
    assert lines[2][8:] == " [1/2] redis-down t=14.2s: alert firing alert=RedisDown source=webhook"
    assert lines[3].endswith("t=16.0s: runbook step step=mitigate line=40 exit=0")
    progress.update(scenario="postgresql-crash", index="[2/2]")
    assert out.getvalue().splitlines()[-1][8:] == " [2/2] postgresql-crash: scenario started"


def test_verdict_line_names_the_outcome_and_its_numbers():
    result = ScenarioResult(id="redis-down", title="t", hypothesis="h", fault="f",
                            target="redis", source="s", status=HELD)
    assert verdict_line(result) == "verdict held"
    result.times = RecoveryTimes(2.7, 2.7, 5.3, None, breached=True)
    result.reconciliation = Reconciliation(source="postgresql", acknowledged=900)
    assert verdict_line(result) == "verdict held TTD=2.7s TTR=5.3s lost_writes=0"
    result.status, result.reason = FALSIFIED, "alert RedisDown did not fire within 15s"
    result.times = RecoveryTimes(None, None, None, None, breached=False)
    assert verdict_line(result).startswith("verdict falsified TTD=- TTR=- lost_writes=0 (alert")
