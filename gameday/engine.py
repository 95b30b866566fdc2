"""The GameDay engine: verify, load, inject, watch, roll back, reconcile, judge.

For each scenario:
1. preflight: the scenario fits the stack and the fault can run here (else skipped);
2. steady state: every probe within tolerance `confirm_checks` times in a row within
   `settle_s`, and no expected alert already firing (else refused: we never inject
   into an unhealthy stack);
3. load through nginx for the whole scenario; `before_s` of healthy traffic;
4. inject (the fault logs its undo first), hold for `duration_s` while a watch loop checks
   the steady state every `interval_s` and the stop conditions (blast radius: abort
   and roll back early); the runbook runs when the first expected alert fires;
5. roll back, wait for recovery, alerts resolving and the runbook (each bounded by its
   deadline), keep `after_s` of traffic, stop the load;
6. reconcile every write against PostgreSQL, evaluate the checks, score.

Rollback is guaranteed by construction: every change is in the on-disk rollback log
before it is made; each scenario rolls back in `finally` (success, failure, abort,
exception); SIGINT/SIGTERM cancel the run, which unwinds through those `finally`
blocks (a second signal cannot interrupt a rollback); anything left is undone by
`cleanup()`, which also runs automatically at the end if a rollback failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import signal
from collections.abc import Awaitable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from gameday import timeline as tl
from gameday.alerts import FIRING, PENDING, WATCHDOG, AlertSources, loaded_alert_names
from gameday.clock import Clock
from gameday.faults import fault_class
from gameday.faults.base import Fault, FaultContext
from gameday.load import LoadGenerator
from gameday.probes import ProbeRunner
from gameday.progress import LiveProgress, Progress
from gameday.reconcile import Reconciliation, reconcile
from gameday.results import (
    ERROR,
    FALSIFIED,
    HELD,
    PLANNED,
    REFUSED,
    SKIPPED,
    GamedayRun,
    ScenarioResult,
)
from gameday.rollback_log import RollbackLog, StackLock, read_rollback_logs
from gameday.runbook_runner import RunbookResult, parse_runbook, run_runbook
from gameday.scenario import Scenario as ScenarioSpec
from gameday.scenario import (
    ScenarioSummary,
    check_against_topology,
    load_catalog,
    select,
    summarize,
)
from gameday.score import run_score, scenario_score
from gameday.targets import target_for
from gameday.targets.base import Target
from gameday.verdict import evaluate, hypothesis_holds
from infra.runbook_env import runbook_env
from infra.topology import REPO_ROOT, Topology
from infra.yaml_source import ConfigError

T = TypeVar("T")
REPORTS_DIR = REPO_ROOT / "reports"
#: Dead man's switch: Watchdog silent this long means the alerting pipeline is down.
DEADMAN_TIMEOUT_S = 10.0


def display_path(path: Path) -> str:
    """Repository-relative when inside the repository, else absolute."""
    try:
        return str(path.relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + secrets.token_hex(2)


async def uninterruptible(awaitable: Awaitable[T]) -> T:
    """Await to completion even if the caller is cancelled meanwhile (rollbacks)."""
    task = asyncio.ensure_future(awaitable)
    cancelled = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        current = asyncio.current_task()
        if current is not None:
            # Re-arm the cancellation for after the rollback, so the run still stops.
            current.cancel()
    return task.result()


class ScenarioRunner:
    def __init__(self, scenario: ScenarioSpec, topology: Topology, target: Target,
                 rollback_log: RollbackLog, run_id: str, index: int,
                 progress: Progress) -> None:
        self.scenario = scenario
        self.topology = topology
        self.target = target
        self.rollback_log = rollback_log
        self.run_id = run_id
        self.index = index
        self.progress = progress
        self.clock = Clock()
        self.timeline = tl.Timeline()
        summary = summarize(scenario)
        self.result = ScenarioResult(
            id=scenario.id, title=scenario.title, hypothesis=scenario.hypothesis.strip(),
            fault=scenario.fault.kind, target=summary.target, source=summary.source,
            started_at=self.clock.started_at.isoformat(timespec="seconds"),
            timeline=self.timeline)
        # Usernames and request ids of this scenario's writes: unique per run and
        # scenario, valid for the app (letters, digits, . _ -).
        self.prefix = f"gd-{run_id}-{index:02d}-"
        self.load: LoadGenerator | None = None
        self.fault: Fault | None = None
        self.alerts: AlertSources | None = None
        self.probes: ProbeRunner | None = None
        self.runbook_task: asyncio.Task[RunbookResult] | None = None
        self.aborted = asyncio.Event()
        self._breach_open = False
        self._stability = tl.StabilityTracker(scenario.recovery.stable_s)
        self._over_limit_since: float | None = None
        self._last_tick_ok: bool | None = None

    # --- helpers ---------------------------------------------------------------------
    def event(self, kind: str, t: float | None = None, **detail: Any) -> None:
        when = self.clock.now() if t is None else t
        self.timeline.add(when, kind, **detail)
        text = kind.replace("_", " ")
        if detail:
            text += " " + " ".join(f"{k}={v}" for k, v in detail.items() if k != "reasons")
        self.progress.update(t=self.clock.now())
        self.progress.event(text)

    def log(self, message: str) -> None:
        self.timeline.add(self.clock.now(), tl.NOTE, message=message)
        self.progress.event(message)

    def make_fault(self) -> Fault:
        ctx = FaultContext(topology=self.topology, target=self.target,
                           rollback_log=self.rollback_log, scenario_id=self.scenario.id,
                           log=self.log, run_id=self.run_id)
        return fault_class(self.scenario.fault.kind)(self.scenario.fault, ctx)

    def preflight(self) -> tuple[list[str], list[str]]:
        """(scenario problems → refuse, fault problems → skip)."""
        problems = check_against_topology(self.scenario, self.topology)
        if problems:
            return problems, []
        self.fault = self.make_fault()
        self.result.plan = self.fault.plan()
        return [], self.fault.preflight()

    # --- the run ---------------------------------------------------------------------
    async def run(self) -> ScenarioResult:
        s = self.scenario
        self.progress.update(scenario=s.id, phase="preflight", steady=None, alerts=[],
                             events=[])
        refuse, skip = self.preflight()
        if refuse or skip:
            self.result.status = REFUSED if refuse else SKIPPED
            self.result.reason = "; ".join(refuse or skip)
            return self.result
        assert self.fault is not None
        self.alerts = AlertSources(
            self.topology.webhook_address, self.topology.url("prometheus"), self.clock,
            self._on_alert, poll_interval_s=1.0, deadman_timeout_s=DEADMAN_TIMEOUT_S,
            notification_log=self.target.notification_log())
        self.probes = ProbeRunner(self.topology, self.target)
        watch_stop = asyncio.Event()
        watch_task: asyncio.Task[None] | None = None
        interrupted = failed = False
        try:
            await self.alerts.start()
            if self.alerts.webhook_error:
                self.result.notes.append(self.alerts.webhook_error)
            await self._note_missing_rules()
            steady, why = await self._verify_steady_state()
            if not steady:
                self.result.status = REFUSED
                self.result.reason = f"steady state not met before injecting: {why}"
                return self.result
            self.event(tl.STEADY_STATE_VERIFIED)

            surge = s.fault.params.users if s.fault.kind == "load_surge" else 0
            self.load = LoadGenerator(
                self.topology.app_url, self.prefix, s.load.users, s.load.mix, self.clock,
                think_time_ms=s.load.think_time_ms, timeout_s=s.load.timeout_s,
                max_requests=s.load.max_requests, max_users=max(s.load.users, surge),
                seed=self.index + 1)
            self.fault.ctx.load = self.load
            await self.load.start()
            self.event(tl.LOAD_STARTED, users=s.load.users)
            watch_task = asyncio.create_task(self._watch(watch_stop))

            self.progress.update(phase="before")
            await self._wait(s.load.before_s)
            await self._inject()
            await self._hold()
            await self._recover()
            self.progress.update(phase="after")
            await self._wait(s.load.after_s, abortable=False)
        except asyncio.CancelledError:
            interrupted = True
            self.result.reason = "interrupted (SIGINT/SIGTERM): rolled back"
            raise
        except Exception as exc:  # noqa: BLE001 - reported; rollback still runs below
            failed = True
            self.result.status = ERROR
            self.result.reason = f"engine error: {type(exc).__name__}: {exc}"
        finally:
            self.progress.update(phase="rollback")
            await uninterruptible(self._finish(watch_stop, watch_task))
            if interrupted:
                self.result.status = ERROR
        if not failed and self.result.status != REFUSED:
            await self._judge()
        return self.result

    async def _finish(self, watch_stop: asyncio.Event,
                      watch_task: asyncio.Task[None] | None) -> None:
        assert self.fault is not None
        self.result.rollback += await self.fault.rollback()
        if self.timeline.time_of(tl.FAULT_INJECTED) is not None and \
                self.timeline.time_of(tl.FAULT_REMOVED) is None:
            self.event(tl.FAULT_REMOVED, reason="final rollback")
        if self.runbook_task is not None and not self.runbook_task.done():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(self.runbook_task),
                                       timeout=self._runbook_budget())
        watch_stop.set()
        if watch_task is not None:
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(watch_task, timeout=30)
        if self.load is not None:
            await self.load.stop()
            self.event(tl.LOAD_STOPPED, sent=len(self.load.samples))
        if self.alerts is not None:
            await self.alerts.stop()
        if self.probes is not None:
            await self.probes.close()
        self.result.duration_s = self.clock.now()

    async def _note_missing_rules(self) -> None:
        rules = await loaded_alert_names(self.topology.url("prometheus"))
        if rules is None:
            self.result.notes.append("could not list Prometheus' alerting rules")
            return
        for alert in self.scenario.alerts:
            if alert.source == "prometheus" and alert.name not in rules:
                self.result.notes.append(
                    f"expected alert {alert.name} has no rule loaded in Prometheus "
                    f"({self.scenario.where(['alerts'])}); it cannot fire")

    async def _wait(self, seconds: float, abortable: bool = True) -> None:
        """Sleep, cut short by an abort (stop condition) or the scenario's hard bound."""
        deadline = min(self.clock.now() + seconds, self.scenario.load.max_duration_s)
        while self.clock.now() < deadline:
            if abortable and self.aborted.is_set():
                return
            await asyncio.sleep(min(0.25, max(0.0, deadline - self.clock.now())))

    # --- steady state ----------------------------------------------------------------
    async def _verify_steady_state(self) -> tuple[bool, str]:
        assert self.probes is not None and self.alerts is not None
        ss = self.scenario.steady_state
        self.progress.update(phase="verifying steady state")
        deadline = self.clock.now() + ss.settle_s
        streak, why = 0, "no check ran"
        for _ in range(10_000):
            results = await self.probes.run_all(ss.probes)
            firing = [a.name for a in self.scenario.alerts
                      if self.alerts.tracker.state(a.name) == FIRING]
            failing = [f"{r.name}: {r.detail}" for r in results if not r.ok]
            if firing:
                failing.append(f"expected alert(s) already firing: {', '.join(firing)}")
            streak = 0 if failing else streak + 1
            why = "; ".join(failing) or why
            self.progress.update(steady=not failing, t=self.clock.now())
            if streak >= ss.confirm_checks:
                return True, ""
            if self.clock.now() >= deadline:
                return False, why
            await asyncio.sleep(ss.interval_s)
        return False, why

    async def _watch(self, stop: asyncio.Event) -> None:
        """Every interval: probes + the users' SLI; breach, regain, stop conditions."""
        assert self.probes is not None and self.load is not None
        ss = self.scenario.steady_state
        for _ in range(1_000_000):
            if stop.is_set():
                return
            t = self.clock.now()
            results = await self.probes.run_all(ss.probes)
            sli = tl.window_sli(self.load.samples, t, ss.load.window_s,
                                self.load.oldest_inflight_age(),
                                stall_after_s=max(1.0, ss.load.max_p99_latency_ms / 1000.0))
            reasons = [f"{r.name}: {r.detail}" for r in results if not r.ok]
            if sli.completed >= ss.load.min_requests:
                if sli.error_rate is not None and sli.error_rate > ss.load.max_error_rate:
                    reasons.append(f"users: error rate {sli.error_rate:.1%} > "
                                   f"{ss.load.max_error_rate:.1%}")
                if sli.p99_ms is not None and sli.p99_ms > ss.load.max_p99_latency_ms:
                    reasons.append(f"users: p99 {sli.p99_ms:.0f} ms > "
                                   f"{ss.load.max_p99_latency_ms:g} ms")
            elif sli.stalled:
                reasons.append("users: requests hang (nothing completes)")
            ok = not reasons
            self.result.ticks.append({
                "t": round(t, 3), "ok": ok, "error_rate": sli.error_rate,
                "p99_ms": sli.p99_ms, "completed": sli.completed, "stalled": sli.stalled,
                "probes": [r.to_dict() for r in results]})
            self._track_state(t, ok, reasons)
            self._check_stop_condition(t, sli)
            if self.alerts is not None:
                self.alerts.deadman.check(t)
            snap = self.load.snapshot()
            self.progress.update(
                t=t, steady=ok, users=snap.users, sent=snap.sent, ok=snap.ok,
                failed=snap.failed, indeterminate=snap.indeterminate, inflight=snap.inflight,
                window_error_rate=sli.error_rate, window_p99_ms=sli.p99_ms,
                alerts=[a for a in self.alerts.tracker.firing_alerts() if a != WATCHDOG]
                if self.alerts else [])
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=ss.interval_s)

    def _track_state(self, t: float, ok: bool, reasons: list[str]) -> None:
        injected = self.timeline.time_of(tl.FAULT_INJECTED)
        if injected is None:
            return
        if not ok:
            if not self._breach_open:
                relapse = self.timeline.time_of(tl.SLI_BREACH, after=injected) is not None
                self.event(tl.SLI_BREACH, t, reasons=reasons[:5], relapse=relapse)
                self._breach_open = True
            self._stability.observe(t, False)
            return
        if self._breach_open:
            regained = self._stability.observe(t, True)
            if regained is not None:
                self.event(tl.STEADY_STATE_REGAINED, regained)
                self._breach_open = False
                self._stability = tl.StabilityTracker(self.scenario.recovery.stable_s)

    def _check_stop_condition(self, t: float, sli: tl.WindowSli) -> None:
        sc = self.scenario.stop_conditions
        injected = self.timeline.time_of(tl.FAULT_INJECTED)
        if injected is None or self.aborted.is_set():
            return
        rate = sli.error_rate if sli.completed >= self.scenario.steady_state.load.min_requests \
            else (1.0 if sli.stalled else None)
        if rate is None or rate <= sc.max_error_rate:
            self._over_limit_since = None
            return
        if self._over_limit_since is None:
            self._over_limit_since = t
        if t - self._over_limit_since >= sc.for_s:
            reason = (f"error rate {rate:.0%} > {sc.max_error_rate:.0%} for "
                      f"{t - self._over_limit_since:.0f}s")
            self.event(tl.STOP_CONDITION, t, reason=reason)
            self.aborted.set()

    # --- alerts and the runbook ------------------------------------------------------
    def _on_alert(self, t: float, alert: str, source: str, old: str, new: str) -> None:
        if alert == WATCHDOG:
            return  # the heartbeat: it always fires; only its absence is news
        kind = {FIRING: tl.ALERT_FIRING, PENDING: tl.ALERT_PENDING}.get(new)
        if kind is None:
            kind = tl.ALERT_RESOLVED if old == FIRING else None
        if kind is None:
            return
        self.event(kind, t, alert=alert, source=source)
        expected = {a.name for a in self.scenario.alerts}
        rb = self.scenario.runbook
        injected = self.timeline.time_of(tl.FAULT_INJECTED)
        if (kind == tl.ALERT_FIRING and alert in expected and rb is not None
                and rb.trigger == "on_alert" and injected is not None
                and self.runbook_task is None):
            self._start_runbook(alert)

    def _start_runbook(self, alert: str | None) -> None:
        rb = self.scenario.runbook
        path = self.scenario.runbook_path
        if rb is None or path is None:
            return
        loop = asyncio.get_running_loop()
        labels = self.alerts.tracker.labels_of(alert) if self.alerts and alert else {}
        env = runbook_env(self.topology, alert, labels)

        def on_step(step: Any) -> None:
            loop.call_soon_threadsafe(
                lambda: self.event(tl.RUNBOOK_STEP, step.started, step=step.step,
                                   line=step.line, exit=step.exit_code,
                                   duration_s=step.duration_s, timed_out=step.timed_out))

        self.event(tl.NOTE, message=f"runbook {display_path(path)} started ({rb.trigger})")
        self.runbook_task = asyncio.create_task(asyncio.to_thread(
            run_runbook, path, rb.steps, env, rb.step_timeout_s, self.clock.now, on_step))

    def _runbook_budget(self) -> float:
        rb = self.scenario.runbook
        if rb is None:
            return 0.0
        path = self.scenario.runbook_path
        blocks = 3
        if path is not None and path.is_file():
            with contextlib.suppress(Exception):
                blocks = max(1, len(parse_runbook(path.read_text())))
        return rb.step_timeout_s * blocks + 5

    # --- inject, hold, recover -------------------------------------------------------
    async def _inject(self) -> None:
        assert self.fault is not None
        self.progress.update(phase="injecting")
        t = self.clock.now()
        self.event(tl.FAULT_INJECTED, t, fault=self.fault.describe())
        await self.fault.inject()
        took = self.clock.now() - t
        if took > 0.5:
            self.log(f"injection took {took:.1f}s")
        if self.fault.instantaneous:
            self.event(tl.FAULT_REMOVED, t, reason="instantaneous")
        rb = self.scenario.runbook
        if rb is not None and rb.trigger == "on_fault":
            self._start_runbook(self.scenario.alerts[0].name if self.scenario.alerts else None)

    async def _hold(self) -> None:
        assert self.fault is not None
        if self.fault.instantaneous:
            return
        self.progress.update(phase=f"fault held {self.scenario.fault.duration_s:g}s")
        await self._wait(self.scenario.fault.duration_s)
        self.progress.update(phase="rolling back the fault")
        # The fault ends when we start undoing it: the recovery deadline then includes
        # the rollback's own duration (e.g. supervisorctl start), which users feel too.
        ended = self.clock.now()
        self.result.rollback += await uninterruptible(self.fault.rollback())
        reason = "aborted by stop condition" if self.aborted.is_set() else "duration elapsed"
        self.event(tl.FAULT_REMOVED, ended, reason=reason,
                   rollback_s=round(self.clock.now() - ended, 2))

    def _recovery_finished(self, t: float) -> bool:
        s = self.scenario
        injected = self.timeline.time_of(tl.FAULT_INJECTED)
        fault_end = self.timeline.time_of(tl.FAULT_REMOVED)
        if injected is None or fault_end is None:
            return False
        recovery_over = t > fault_end + s.recovery.deadline_s
        breached = self.timeline.time_of(tl.SLI_BREACH, after=injected) is not None
        recovered = (not breached and t >= fault_end + s.recovery.stable_s) or (
            breached and not self._breach_open
            and self.timeline.recovered_at(injected) is not None)
        if not (recovered or recovery_over):
            return False
        regained = self.timeline.recovered_at(injected) or fault_end
        for alert in s.alerts:
            seen = tl.alert_detection(self.timeline, alert.name)
            if seen["firing"] is None:
                if t <= injected + alert.deadline_s:
                    return False
            elif seen["resolved"] is None:
                if recovered and t <= regained + alert.resolve_deadline_s:
                    return False
        if self.runbook_task is not None and not self.runbook_task.done():
            return False
        return True

    async def _recover(self) -> None:
        self.progress.update(phase="recovering")
        for _ in range(1_000_000):
            t = self.clock.now()
            if self._recovery_finished(t):
                return
            if t >= self.scenario.load.max_duration_s:
                self.log(f"scenario bound reached ({self.scenario.load.max_duration_s:g}s)")
                return
            await asyncio.sleep(0.25)

    # --- results -----------------------------------------------------------------------
    async def _judge(self) -> None:
        s = self.scenario
        r = self.result
        end = self.clock.now()
        samples = self.load.samples if self.load else []
        bounds = tl.phase_bounds(self.timeline, end)
        r.phase_bounds = bounds
        r.phases = {name: tl.phase_stats(samples, a, b) for name, (a, b) in bounds.items()}
        r.series = tl.per_second_series(samples, end)
        healthy = [x for x in samples if not bounds["during"][0] <= x.started
                   < bounds["during"][1]]
        if s.fault.kind == "load_surge":
            healthy = samples  # the surge is the load: every level belongs in the table
        r.concurrency = tl.by_concurrency(healthy)
        r.healthy_samples = healthy
        r.times = tl.recovery_times(self.timeline, [a.name for a in s.alerts])
        r.alerts = {a.name: tl.alert_detection(self.timeline, a.name) for a in s.alerts}
        r.reconciliation = await asyncio.to_thread(self._reconcile)
        if self.runbook_task is not None and self.runbook_task.done():
            try:
                r.runbook = self.runbook_task.result()
            except Exception as exc:  # noqa: BLE001
                r.runbook = RunbookResult(path=str(s.runbook_path), found=True,
                                          steps_requested=[], problem=str(exc))
        elif s.runbook is not None and s.runbook_path is not None \
                and not s.runbook_path.is_file():
            r.runbook = RunbookResult(path=str(s.runbook_path), found=False,
                                      steps_requested=list(s.runbook.steps),
                                      problem=f"{s.runbook_path}: runbook not found")
        rolled_back = self.fault is not None and self.fault.fully_rolled_back
        r.checks = evaluate(s, self.timeline, r.phases, r.reconciliation, r.runbook,
                            rolled_back)
        r.score = scenario_score(s, self.timeline, r.phases, r.reconciliation)
        held = hypothesis_holds(r.checks)
        r.status = HELD if held else FALSIFIED
        if not held:
            r.reason = "; ".join(f"{c.name}: {c.measured}" for c in r.checks
                                 if not c.passed and not c.informational)

    def _reconcile(self) -> Reconciliation:
        from gameday.database import fetch_run_rows

        writes = self.load.writes if self.load else []
        try:
            users, events = fetch_run_rows(self.topology, self.prefix)
        except Exception as exc:  # noqa: BLE001 - reported as a failed check
            result = Reconciliation(source="sql")
            result.error = f"could not read the database: {type(exc).__name__}: {exc}"
            return result
        return reconcile(writes, users, events, source="sql")


# --- dry run ----------------------------------------------------------------------------
async def plan_scenario(scenario: ScenarioSpec, topology: Topology, target: Target,
                        rollback_log: RollbackLog, run_id: str, index: int) -> ScenarioResult:
    runner = ScenarioRunner(scenario, topology, target, rollback_log, run_id, index, Progress())
    refuse, skip = runner.preflight()
    result = runner.result
    if refuse:
        result.status, result.reason = REFUSED, "; ".join(refuse)
        return result
    if skip:
        result.status, result.reason = SKIPPED, "; ".join(skip)
    else:
        result.status = PLANNED
    path = scenario.runbook_path
    if scenario.runbook is not None and path is not None:
        if path.is_file():
            try:
                blocks = parse_runbook(path.read_text(encoding="utf-8"), str(path))
                result.notes.append(f"runbook {display_path(path)}: "
                                    + ", ".join(f"{b.step}@L{b.line}" for b in blocks))
            except Exception as exc:  # noqa: BLE001
                result.notes.append(f"runbook {path}: {exc}")
        else:
            result.notes.append(f"runbook {display_path(path)} is missing "
                                "(reported, not fatal)")
    probes = ProbeRunner(topology, target)
    try:
        for probe_result in await probes.run_all(scenario.steady_state.probes):
            mark = "ok" if probe_result.ok else "FAILS"
            result.notes.append(f"steady-state probe {probe_result.name}: {mark} "
                                f"({probe_result.detail})")
    finally:
        await probes.close()
    return result


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
    if problems:
        raise ConfigError(problems)
    target = target or target_for(topology)
    if progress is None:
        progress = LiveProgress() if not dry_run else Progress()
    run = GamedayRun(run_id=new_run_id(), stack=topology.stack,
                     started_at=datetime.now(UTC).isoformat(timespec="seconds"),
                     dry_run=dry_run)
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
                run.results.append(await runner.run())
            except asyncio.CancelledError:
                run.results.append(runner.result)
                raise
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
