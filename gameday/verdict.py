"""Does the hypothesis hold? One named check per promise the scenario makes.

Pure: built from the timeline, the phase statistics, the reconciliation and the
runbook result, so each rule is unit-tested.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from gameday.reconcile import Reconciliation
from gameday.runbook_runner import RunbookResult
from gameday.scenario import Scenario
from gameday.timeline import (
    FAULT_INJECTED,
    FAULT_REMOVED,
    SLI_BREACH,
    STOP_CONDITION,
    PhaseStats,
    Timeline,
    alert_detection,
    recovery_times,
)


@dataclass
class Check:
    name: str
    passed: bool
    expected: str
    measured: str
    #: informational checks are shown but never falsify (e.g. a missing runbook
    #: while runbooks are still being written).
    informational: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _fmt(seconds: float | None) -> str:
    return "never" if seconds is None else f"{seconds:.1f}s"


def evaluate(scenario: Scenario, timeline: Timeline, phases: dict[str, PhaseStats],
             reconciliation: Reconciliation | None, runbook: RunbookResult | None,
             rolled_back: bool) -> list[Check]:
    checks: list[Check] = []
    injected = timeline.time_of(FAULT_INJECTED)
    if injected is None:
        return [Check("fault injected", False, "the fault is injected", "it was not")]
    times = recovery_times(timeline, [a.name for a in scenario.alerts])
    fault_end = timeline.time_of(FAULT_REMOVED, after=injected)
    recovered = timeline.recovered_at(injected)

    for alert in scenario.alerts:
        seen = alert_detection(timeline, alert.name)
        ttd = None if seen["firing"] is None else seen["firing"] - injected
        checks.append(Check(
            f"alert {alert.name} fires", ttd is not None and ttd <= alert.deadline_s,
            f"≤ {alert.deadline_s:g}s after injection", _fmt(ttd),
            informational=not alert.required))
        if seen["firing"] is not None:
            since = recovered if recovered is not None else fault_end
            resolved_after = (None if seen["resolved"] is None or since is None
                              else max(0.0, seen["resolved"] - since))
            checks.append(Check(
                f"alert {alert.name} resolves",
                resolved_after is not None and resolved_after <= alert.resolve_deadline_s,
                f"≤ {alert.resolve_deadline_s:g}s after recovery", _fmt(resolved_after),
                informational=not alert.required))

    breached = timeline.time_of(SLI_BREACH, after=injected) is not None
    if not breached:
        checks.append(Check("recovers within deadline", True,
                            f"≤ {scenario.recovery.deadline_s:g}s after the fault ends",
                            "steady state never broke"))
    else:
        after_end = times.recovery_after_fault_end
        checks.append(Check("recovers within deadline",
                            after_end is not None and after_end <= scenario.recovery.deadline_s,
                            f"≤ {scenario.recovery.deadline_s:g}s after the fault ends",
                            _fmt(after_end) + (f" (time to recover {_fmt(times.time_to_recover)})"
                                               if after_end is not None else "")))

    stop = timeline.first(STOP_CONDITION)
    checks.append(Check("blast radius within stop conditions", stop is None,
                        f"error rate ≤ {scenario.stop_conditions.max_error_rate:.0%} or for "
                        f"< {scenario.stop_conditions.for_s:g}s",
                        "aborted: " + stop.detail.get("reason", "") if stop else "not hit"))

    dc = scenario.data_checks
    if reconciliation is None or reconciliation.error:
        checks.append(Check("writes reconciled", False, "every write checked against the "
                            "database", reconciliation.error if reconciliation else "not run"))
    else:
        r = reconciliation
        checks.append(Check("no lost acknowledged writes",
                            r.lost_acknowledged_writes <= dc.max_lost_acknowledged_writes,
                            f"≤ {dc.max_lost_acknowledged_writes}",
                            f"{r.lost_acknowledged_writes} of {r.acknowledged} acknowledged"))
        if dc.lost_writes_within_s is not None:
            checks.append(lost_window_check(r.lost_acknowledged, injected,
                                            dc.lost_writes_within_s))
        checks.append(Check("audit trail matches the users",
                            r.audit_mismatches <= dc.max_audit_mismatches,
                            f"≤ {dc.max_audit_mismatches} mismatches",
                            f"{r.audit_mismatches}"))
        landed = r.landed_after_error
        checks.append(Check(
            "writes that landed despite an error",
            dc.max_landed_despite_failure is None or landed <= dc.max_landed_despite_failure,
            "reported" if dc.max_landed_despite_failure is None
            else f"≤ {dc.max_landed_despite_failure}",
            f"{len(r.landed_despite_failure)} after a failure, "
            f"{len(r.landed_despite_indeterminate)} after a timeout/reset "
            f"(of {r.failed} failed, {r.indeterminate} indeterminate)",
            informational=dc.max_landed_despite_failure is None))

    if dc.min_success_rate_during is not None:
        rate = phases.get("during").success_rate if phases.get("during") else None
        checks.append(Check("users served while the fault is active",
                            rate is not None and rate >= dc.min_success_rate_during,
                            f"≥ {dc.min_success_rate_during:.0%}",
                            "no requests" if rate is None else f"{rate:.1%}"))

    if scenario.runbook is not None:
        if runbook is None:
            checks.append(Check("runbook executed", False, "runbook run on "
                                f"{scenario.runbook.trigger}", "never triggered",
                                informational=not scenario.runbook.required))
        elif not runbook.found:
            checks.append(Check("runbook executed", False, f"{runbook.path} exists",
                                "missing (reported, not fatal until runbooks land)"
                                if not scenario.runbook.required else "missing",
                                informational=not scenario.runbook.required))
        else:
            failed = [f"{r.step}@L{r.line}: exit {r.exit_code}"
                      + (" (timeout)" if r.timed_out else "") for r in runbook.results if not r.ok]
            checks.append(Check(
                "runbook steps succeed", runbook.ok,
                "every diagnose/mitigate/verify block exits 0",
                "; ".join(failed) or runbook.problem
                or f"{len(runbook.results)} block(s) ok"))

    checks.append(Check("fault rolled back", rolled_back, "every rollback log entry undone",
                        "yes" if rolled_back else "NO: run `invoke gameday --cleanup`"))
    return checks


def hypothesis_holds(checks: list[Check]) -> bool:
    return all(c.passed for c in checks if not c.informational)


def lost_window_check(lost: list[dict[str, Any]], injected: float, window_s: float) -> Check:
    """The recovery point as a measured fact: when the lost writes were acknowledged,
    in seconds before the fault; all of them must fall inside the claimed window."""
    if not lost:
        return Check("lost writes only in the claimed window", True,
                     f"acknowledged ≤ {window_s:g}s before the fault", "none lost")
    offsets = [float(w.get("acked", w["t"])) - injected for w in lost]
    first, last = min(offsets), max(offsets)
    return Check("lost writes only in the claimed window", -first <= window_s,
                 f"acknowledged ≤ {window_s:g}s before the fault",
                 f"{len(lost)} lost, acknowledged from {first:+.1f}s to {last:+.1f}s "
                 "of the fault")
