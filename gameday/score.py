"""The resilience score: one number per scenario and for the run, formula stated.

    score = 100 × I × (0.35·D + 0.35·R + 0.30·A)

- D, detection: mean over the required expected alerts of 1 if it fired within its
  deadline, 1 − (ttd − deadline)/deadline (floored at 0) if late, 0 if it never fired.
  1 when the scenario expects no alert.
- R, recovery: 1 if steady state never broke or came back within the recovery
  deadline, 1 − (late by)/deadline (floored at 0) if late, 0 if it never came back.
- A, availability: the users' success rate while the fault was active (1 if no
  requests were sent in that phase).
- I, integrity: 1 if no acknowledged write was lost and the audit trail matches,
  else 0: losing acknowledged data zeroes the scenario, whatever else went well.

The run's score is the mean over the scenarios that ran (refused or skipped ones are
listed, not scored).
"""

from __future__ import annotations

from gameday.reconcile import Reconciliation
from gameday.scenario import Scenario
from gameday.timeline import FAULT_INJECTED, PhaseStats, Timeline, alert_detection, recovery_times

FORMULA = "score = 100 × I × (0.35·D + 0.35·R + 0.30·A)"


def _lateness(measured: float | None, deadline: float) -> float:
    if measured is None:
        return 0.0
    if measured <= deadline:
        return 1.0
    return max(0.0, 1.0 - (measured - deadline) / deadline)


def scenario_score(scenario: Scenario, timeline: Timeline, phases: dict[str, PhaseStats],
                   reconciliation: Reconciliation | None) -> dict[str, float]:
    injected = timeline.time_of(FAULT_INJECTED)
    required = [a for a in scenario.alerts if a.required]
    if injected is None:
        return {"score": 0.0, "D": 0.0, "R": 0.0, "A": 0.0, "I": 0.0}
    if required:
        parts = []
        for alert in required:
            firing = alert_detection(timeline, alert.name)["firing"]
            parts.append(_lateness(None if firing is None else firing - injected,
                                   alert.deadline_s))
        detection = sum(parts) / len(parts)
    else:
        detection = 1.0
    times = recovery_times(timeline, [a.name for a in scenario.alerts])
    if not times.breached:
        recovery = 1.0
    else:
        recovery = _lateness(times.recovery_after_fault_end, scenario.recovery.deadline_s)
    during = phases.get("during")
    availability = during.success_rate if during and during.success_rate is not None else 1.0
    integrity = 1.0 if (reconciliation is not None and not reconciliation.error
                        and reconciliation.lost_acknowledged_writes == 0
                        and reconciliation.audit_mismatches == 0) else 0.0
    score = 100.0 * integrity * (0.35 * detection + 0.35 * recovery + 0.30 * availability)
    return {"score": round(score, 1), "D": round(detection, 3), "R": round(recovery, 3),
            "A": round(availability, 3), "I": integrity}


def run_score(scores: list[float]) -> float | None:
    return round(sum(scores) / len(scores), 1) if scores else None
