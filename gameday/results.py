"""What a GameDay produces: one ScenarioResult per scenario, one GamedayRun per run.

`to_dict()` is the JSON journal of the report (Chaos Toolkit's journal idea: the
experiment as run, with every measurement), from which the Markdown, HTML and JUnit
views are rendered.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gameday.reconcile import Reconciliation
from gameday.runbook_runner import RunbookResult
from gameday.timeline import PhaseStats, RecoveryTimes, RequestSample, Timeline
from gameday.verdict import Check

# Scenario statuses.
HELD = "held"            # every check passed
FALSIFIED = "falsified"  # ran; at least one check failed
REFUSED = "refused"      # not run: the stack was not in its steady state beforehand
SKIPPED = "skipped"      # not run: the fault cannot run on this stack (says why)
ERROR = "error"          # the engine failed or was interrupted mid-scenario
PLANNED = "planned"      # --dry-run


@dataclass
class ScenarioResult:
    id: str
    title: str
    hypothesis: str
    fault: str
    target: str
    source: str
    status: str = ERROR
    reason: str = ""
    started_at: str = ""
    duration_s: float = 0.0
    plan: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    timeline: Timeline = field(default_factory=Timeline)
    ticks: list[dict[str, Any]] = field(default_factory=list)
    phases: dict[str, PhaseStats] = field(default_factory=dict)
    phase_bounds: dict[str, tuple[float, float]] = field(default_factory=dict)
    series: list[dict[str, Any]] = field(default_factory=list)
    concurrency: dict[int, PhaseStats] = field(default_factory=dict)
    times: RecoveryTimes | None = None
    alerts: dict[str, dict[str, Any]] = field(default_factory=dict)
    reconciliation: Reconciliation | None = None
    runbook: RunbookResult | None = None
    checks: list[Check] = field(default_factory=list)
    rollback: list[str] = field(default_factory=list)
    score: dict[str, float] | None = None
    #: Samples taken while no fault was active (kept in memory for the run's
    #: concurrency table, not written to the journal).
    healthy_samples: list[RequestSample] = field(default_factory=list, repr=False)

    @property
    def ran(self) -> bool:
        return self.status in (HELD, FALSIFIED)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "title": self.title, "hypothesis": self.hypothesis,
            "fault": self.fault, "target": self.target, "source": self.source,
            "status": self.status, "reason": self.reason, "started_at": self.started_at,
            "duration_s": round(self.duration_s, 2), "plan": self.plan, "notes": self.notes,
            "timeline": [e.to_dict() for e in self.timeline.sorted()],
            "ticks": self.ticks,
            "phases": {k: v.to_dict() for k, v in self.phases.items()},
            "phase_bounds": {k: [round(a, 3), round(b, 3)] for k, (a, b)
                             in self.phase_bounds.items()},
            "series": self.series,
            "concurrency": {str(k): v.to_dict() for k, v in self.concurrency.items()},
            "times": self.times.to_dict() if self.times else None,
            "alerts": self.alerts,
            "reconciliation": self.reconciliation.to_dict() if self.reconciliation else None,
            "runbook": self.runbook.to_dict() if self.runbook else None,
            "checks": [c.to_dict() for c in self.checks],
            "rollback": self.rollback,
            "score": self.score,
        }


@dataclass
class GamedayRun:
    run_id: str
    stack: str
    started_at: str
    dry_run: bool
    results: list[ScenarioResult] = field(default_factory=list)
    finished_at: str = ""
    report_dir: Path | None = None
    score: float | None = None
    interrupted: bool = False
    notes: list[str] = field(default_factory=list)
    cleanup: dict[str, Any] | None = None
    #: Concurrent users → statistics, over every scenario's fault-free traffic.
    concurrency: dict[int, PhaseStats] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        """0: every hypothesis held (or, dry-run, every scenario can run); 1: any
        falsified, refused or errored; 130: interrupted (Ctrl-C)."""
        if self.interrupted:
            return 130
        if self.dry_run:
            return 0 if all(r.status in (PLANNED, SKIPPED) for r in self.results) else 1
        bad = {FALSIFIED, REFUSED, ERROR}
        return 1 if any(r.status in bad for r in self.results) else 0

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "stack": self.stack, "started_at": self.started_at,
                "finished_at": self.finished_at, "dry_run": self.dry_run,
                "interrupted": self.interrupted, "exit_code": self.exit_code,
                "score": self.score, "notes": self.notes, "cleanup": self.cleanup,
                "concurrency": {str(k): v.to_dict() for k, v in self.concurrency.items()},
                "scenarios": [r.to_dict() for r in self.results]}


def verdict_line(result: ScenarioResult) -> str:
    """The scenario's outcome in one line: verdict, TTD, TTR, lost writes, why."""
    parts = [f"verdict {result.status}"]
    times = result.times
    if times is not None:
        def seconds(value: float | None) -> str:
            return "-" if value is None else f"{value:.1f}s"

        parts.append(f"TTD={seconds(times.time_to_detect)} TTR={seconds(times.time_to_recover)}")
    if result.reconciliation is not None:
        parts.append(f"lost_writes={result.reconciliation.lost_acknowledged_writes}")
    if result.reason:
        parts.append(f"({result.reason})")
    return " ".join(parts)
