"""Judging one scenario once it has run: the measurements, the checks, the verdict.

From the timeline and the load's samples: per-phase statistics, the per-second
series, the concurrency table, time-to-detect and time-to-recover, each expected
alert's detection; then every acknowledged write reconciled against PostgreSQL, the
runbook's result, the checks of the hypothesis (`gameday.verdict`) and the score.
"""

from __future__ import annotations

import asyncio

from gameday import timeline as tl
from gameday.load import RequestSample, WriteRecord
from gameday.reconcile import Reconciliation, reconcile
from gameday.results import FALSIFIED, HELD, ScenarioResult
from gameday.runbook_runner import RunbookResult
from gameday.scenario import Scenario
from gameday.score import scenario_score
from gameday.verdict import evaluate, hypothesis_holds
from infra.targets.base import Target
from infra.topology import Topology


def reconcile_run(topology: Topology, prefix: str, writes: list[WriteRecord],
                  target: Target | None = None) -> Reconciliation:
    """The scenario's writes (usernames and request ids start with `prefix`) against
    the rows PostgreSQL holds, read through PgBouncer where `target` says this machine
    reaches it; a database that cannot be read is a failed check."""
    from gameday.database import fetch_run_rows

    try:
        if target is None:
            users, events = fetch_run_rows(topology, prefix)
        else:
            with target.endpoint(topology.one("pgbouncer")) as at:
                users, events = fetch_run_rows(topology, prefix, at=at)
    except Exception as exc:  # noqa: BLE001 - reported as a failed check
        result = Reconciliation(source="sql")
        result.error = f"could not read the database: {type(exc).__name__}: {exc}"
        return result
    return reconcile(writes, users, events, source="sql")


def runbook_outcome(scenario: Scenario,
                    task: asyncio.Task[RunbookResult] | None) -> RunbookResult | None:
    """What the runbook did (its task is done), or that it was missing; None if the
    scenario has none or it never started."""
    if task is not None and task.done():
        try:
            return task.result()
        except Exception as exc:  # noqa: BLE001
            return RunbookResult(path=str(scenario.runbook_path), found=True,
                                 steps_requested=[], problem=str(exc))
    if scenario.runbook is not None and scenario.runbook_path is not None \
            and not scenario.runbook_path.is_file():
        return RunbookResult(path=str(scenario.runbook_path), found=False,
                             steps_requested=list(scenario.runbook.steps),
                             problem=f"{scenario.runbook_path}: runbook not found")
    return None


def measure(scenario: Scenario, result: ScenarioResult, timeline: tl.Timeline,
            end: float, samples: list[RequestSample]) -> None:
    """The measurements of the run, into `result`."""
    bounds = tl.phase_bounds(timeline, end)
    result.phase_bounds = bounds
    result.phases = {name: tl.phase_stats(samples, a, b) for name, (a, b) in bounds.items()}
    result.series = tl.per_second_series(samples, end)
    healthy = [x for x in samples if not bounds["during"][0] <= x.started
               < bounds["during"][1]]
    if scenario.fault.kind == "load_surge":
        healthy = samples  # the surge is the load: every level belongs in the table
    result.concurrency = tl.by_concurrency(healthy)
    result.healthy_samples = healthy
    result.times = tl.recovery_times(timeline, [a.name for a in scenario.alerts])
    result.alerts = {a.name: tl.alert_detection(timeline, a.name) for a in scenario.alerts}


def decide(scenario: Scenario, result: ScenarioResult, timeline: tl.Timeline,
           rolled_back: bool) -> None:
    """The checks of the hypothesis, the score and the verdict, into `result` (its
    measurements, reconciliation and runbook are already there)."""
    result.checks = evaluate(scenario, timeline, result.phases, result.reconciliation,
                             result.runbook, rolled_back)
    result.score = scenario_score(scenario, timeline, result.phases, result.reconciliation)
    held = hypothesis_holds(result.checks)
    result.status = HELD if held else FALSIFIED
    if not held:
        result.reason = "; ".join(f"{c.name}: {c.measured}" for c in result.checks
                                  if not c.passed and not c.informational)
