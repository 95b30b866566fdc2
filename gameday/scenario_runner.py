"""One scenario against a deployed stack: verify, load, inject, watch, roll back, judge.

1. preflight: the scenario fits the stack and the fault can run here (else skipped);
2. steady state (`gameday.steady_state`): every probe within tolerance
   `confirm_checks` times in a row within `settle_s`, and no expected alert already
   firing (else refused: we never inject into an unhealthy stack);
3. load through nginx for the whole scenario; `before_s` of healthy traffic;
4. inject (the fault logs its undo first), hold for `duration_s` while a watch loop checks
   the steady state every `interval_s` and the stop conditions (blast radius: abort
   and roll back early); the runbook runs when the first expected alert fires;
5. roll back, wait for recovery, alerts resolving and the runbook (each bounded by its
   deadline), keep `after_s` of traffic, stop the load;
6. judge (`gameday.judging`): reconcile every write against PostgreSQL, evaluate the
   checks, score.

Each scenario rolls back in `finally` (success, failure, abort, exception, and the
cancellation SIGINT/SIGTERM cause); a rollback runs to its end even when cancelled
(`uninterruptible`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, TypeVar

from gameday import timeline as tl
from gameday.alerts import FIRING, PENDING, WATCHDOG, AlertSources, loaded_alert_names
from gameday.clock import Clock
from gameday.faults import fault_class
from gameday.faults.base import Fault, FaultContext
from gameday.judging import decide, measure, reconcile_run, runbook_outcome
from gameday.load import LoadGenerator
from gameday.probes import ProbeRunner
from gameday.progress import Progress
from gameday.results import (
    ERROR,
    PLANNED,
    REFUSED,
    SKIPPED,
    ScenarioResult,
)
from gameday.rollback_log import RollbackLog
from gameday.runbook_runner import RunbookResult, parse_runbook, run_runbook
from gameday.scenario import Scenario as ScenarioSpec
from gameday.scenario import (
    absent_optional_services,
    check_against_topology,
    summarize,
)
from gameday.steady_state import SteadyStateWatch
from infra.runbook_env import runbook_env
from infra.stack_lock import HOLDER_ENV
from infra.targets.base import Target
from infra.topology import REPO_ROOT, Topology

T = TypeVar("T")
#: Dead man's switch: Watchdog silent this long means the alerting pipeline is down.
DEADMAN_TIMEOUT_S = 10.0


def display_path(path: Path) -> str:
    """Repository-relative when inside the repository, else absolute."""
    try:
        return str(path.relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


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
        self.steady: SteadyStateWatch | None = None
        self.aborted = asyncio.Event()

    # --- helpers ---------------------------------------------------------------------
    def event(self, kind: str, t: float | None = None, **detail: Any) -> None:
        when = self.clock.now() if t is None else t
        self.timeline.add(when, kind, **detail)
        text = kind.replace("_", " ")
        if detail:
            text += " " + " ".join(f"{k}={v}" for k, v in detail.items() if k != "reasons")
        self.progress.update(t=self.clock.now())
        self.progress.event(text, when)

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
        absent = absent_optional_services(self.scenario, self.topology)
        if absent:
            return [], [f"stack {self.topology.stack!r} runs no {', '.join(absent)} "
                        "(optional: it keeps no backups)"]
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
        self.steady = SteadyStateWatch(s, self.clock, self.timeline, self.probes, self.alerts,
                                       self.progress, self.event, self.result.ticks,
                                       self.aborted)
        watch_stop = asyncio.Event()
        watch_task: asyncio.Task[None] | None = None
        interrupted = failed = False
        try:
            await self.alerts.start()
            if self.alerts.webhook_error:
                self.result.notes.append(self.alerts.webhook_error)
            await self._note_missing_rules()
            steady, why = await self.steady.verify()
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
            watch_task = asyncio.create_task(self.steady.watch(self.load, watch_stop))

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
        # A restore the runbook runs goes on under this engine's stack lock.
        env[HOLDER_ENV] = str(os.getpid())
        if self.fault is not None:
            env.update(self.fault.runbook_env())

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
            breached and not (self.steady is not None and self.steady.breach_open)
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
        s, r = self.scenario, self.result
        measure(s, r, self.timeline, self.clock.now(), self.load.samples if self.load else [])
        r.reconciliation = await asyncio.to_thread(
            reconcile_run, self.topology, self.prefix, self.load.writes if self.load else [],
            self.target)
        r.runbook = runbook_outcome(s, self.runbook_task)
        decide(s, r, self.timeline, self.fault is not None and self.fault.fully_rolled_back)


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
