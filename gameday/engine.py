"""The GameDay engine: a run of scenarios against a deployed stack, and its report.

`run_gameday` validates the chosen scenarios, takes the stack's lock, undoes what a
killed run left, runs each scenario (`gameday.scenario_runner`: verify, load, inject,
watch, roll back, judge) or plans it (`--dry-run`), and writes the report.

Rollback is guaranteed by construction: every change is in the on-disk rollback log
before it is made; each scenario rolls back in `finally` (success, failure, abort,
exception); SIGINT/SIGTERM cancel the run, which unwinds through those `finally`
blocks (a second signal cannot interrupt a rollback); anything left is undone by
`cleanup()`, which also runs automatically at the end if a rollback failed.
"""

from __future__ import annotations

import asyncio
import secrets
import signal
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from gameday import timeline as tl
from gameday.catalog_check import check_catalog
from gameday.progress import Progress, progress_for
from gameday.results import GamedayRun, verdict_line
from gameday.rollback_log import RollbackLog, read_rollback_logs
from gameday.scenario import Scenario as ScenarioSpec
from gameday.scenario import (
    ScenarioSummary,
    check_against_topology,
    load_catalog,
    select,
    summarize,
)
from gameday.scenario_runner import ScenarioRunner, plan_scenario
from gameday.score import run_score
from infra.stack_lock import StackLock
from infra.targets import target_for
from infra.targets.base import Target
from infra.topology import REPO_ROOT, Topology
from infra.yaml_source import ConfigError

REPORTS_DIR = REPO_ROOT / "reports"


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + secrets.token_hex(2)


# --- the run ----------------------------------------------------------------------------
def list_scenarios(topology: Topology | None = None) -> list[ScenarioSummary]:
    """The catalog (validated); with a topology, also checked against that stack."""
    catalog = load_catalog()
    if topology is not None:
        problems = [p for s in catalog.values() for p in check_against_topology(s, topology)]
        if problems:
            raise ConfigError(problems)
    return [summarize(s) for s in catalog.values()]


def run_gameday(topology: Topology, scenario_ids: Sequence[str] | None = None,
                dry_run: bool = False, reports_dir: Path | None = None,
                progress: Progress | None = None, target: Target | None = None,
                scenarios_dir: Path | None = None,
                write_report: bool = True) -> GamedayRun:
    """Run (or plan) scenarios against a deployed stack and write the report.

    Raises ConfigError (file:line: field: problem) if any scenario file is invalid:
    then nothing runs. Returns the run; `run.exit_code` is non-zero if a hypothesis
    was falsified, a scenario was refused or errored, or the run was interrupted.
    """
    catalog = load_catalog(scenarios_dir)
    chosen = select(catalog, scenario_ids)
    problems = [p for s in chosen for p in check_against_topology(s, topology)]
    warnings: list[str] = []
    if dry_run:
        catalog_check = check_catalog(chosen, topology)
        problems += catalog_check.errors
        warnings = catalog_check.warnings
    if problems:
        raise ConfigError(problems)
    target = target or target_for(topology)
    if progress is None:
        progress = progress_for() if not dry_run else Progress()
    run = GamedayRun(run_id=new_run_id(), stack=topology.stack,
                     started_at=datetime.now(UTC).isoformat(timespec="seconds"),
                     dry_run=dry_run, notes=[f"warning: {w}" for w in warnings])
    asyncio.run(_run_all(run, chosen, topology, target, progress))
    run.finished_at = datetime.now(UTC).isoformat(timespec="seconds")
    run.score = run_score([r.score["score"] for r in run.results if r.ran and r.score])
    run.concurrency = tl.merge_concurrency([r.healthy_samples for r in run.results])
    for result in run.results:
        result.healthy_samples = []
    if write_report:
        from gameday.report import write_report as write

        run.report_dir = write(run, reports_dir or REPORTS_DIR)
    return run


async def _run_all(run: GamedayRun, scenarios: list[ScenarioSpec], topology: Topology,
                   target: Target, progress: Progress) -> None:
    from gameday.cleanup import cleanup

    # A dry run changes nothing: no lock, no rollback log file, no cleanup.
    lock = None if run.dry_run else StackLock(topology.state_dir).acquire()
    main = asyncio.current_task()
    loop = asyncio.get_running_loop()
    signals_seen = 0

    def on_signal(signum: int) -> None:
        nonlocal signals_seen
        signals_seen += 1
        if signals_seen == 1 and main is not None:
            run.interrupted = True
            progress.log(f"{signal.Signals(signum).name}: stopping; rolling back first")
            main.cancel()
        else:
            progress.log("rollback in progress; it cannot be interrupted (use "
                         "`invoke gameday --cleanup` afterwards if you kill -9 this)")

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    progress.start()
    rollback_log: RollbackLog | None = None
    try:
        if run.dry_run:
            rollback_log = RollbackLog(topology.state_dir, run.run_id, topology.stack)
        else:
            leftover = next((log for log in read_rollback_logs(topology.state_dir)
                             if log.pending()), None)
            if leftover is not None:
                report = await asyncio.to_thread(cleanup, topology, target, lock_held=True)
                run.notes.append(f"a previous run ({leftover.run_id}) left changes; cleaned "
                                 f"up first: {report.summary()}")
                if not report.ok:
                    raise RuntimeError(f"cleanup of a previous run failed: {report.summary()}")
            rollback_log = RollbackLog.create(topology.state_dir, run.run_id, topology.stack)
        for index, scenario in enumerate(scenarios, 1):
            progress.update(index=f"[{index}/{len(scenarios)}]")
            if run.dry_run:
                run.results.append(await plan_scenario(scenario, topology, target, rollback_log,
                                                       run.run_id, index))
                continue
            runner = ScenarioRunner(scenario, topology, target, rollback_log, run.run_id, index,
                                    progress)
            try:
                result = await runner.run()
            except asyncio.CancelledError:
                run.results.append(runner.result)
                raise
            run.results.append(result)
            progress.event(verdict_line(result))
    except asyncio.CancelledError:
        run.interrupted = True
    finally:
        progress.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        if rollback_log is not None and not run.dry_run and not rollback_log.finish():
            # Some rollback failed: retry everything from the rollback log, then check health.
            report = await asyncio.to_thread(cleanup, topology, target, lock_held=True)
            run.cleanup = report.to_dict()
            run.notes.append(f"rollback incomplete; cleanup ran: {report.summary()}")
        if lock is not None:
            lock.release()
