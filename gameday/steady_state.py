"""The steady state of a scenario: confirmed before injecting, then watched until the end.

Before the fault: every probe within tolerance `confirm_checks` times in a row within
`settle_s`, and no expected alert already firing (else the engine refuses: it never
injects into an unhealthy stack). From the start of the load: every `interval_s` the
probes and the users' SLI over the last `window_s`; after injection an SLI breach and
the steady state regained (stable for `recovery.stable_s`) go on the timeline, and the
stop condition (blast radius) aborts the fault early.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gameday import timeline as tl
from gameday.alerts import FIRING, WATCHDOG, AlertSources
from gameday.clock import Clock
from gameday.load import LoadGenerator
from gameday.probes import ProbeRunner
from gameday.progress import Progress
from gameday.scenario import Scenario

#: Puts one event on the scenario's timeline (and the progress display).
EventSink = Callable[..., None]


# eq=False: a watch is a running thing with state, equal only to itself.
@dataclass(eq=False)
class SteadyStateWatch:
    scenario: Scenario
    clock: Clock
    timeline: tl.Timeline
    probes: ProbeRunner
    alerts: AlertSources
    progress: Progress
    event: EventSink
    #: One record per watch tick, kept in the scenario's result.
    ticks: list[dict[str, Any]]
    #: Set when the stop condition holds: the engine ends the fault early.
    aborted: asyncio.Event
    #: An SLI breach after injection that has not been regained yet.
    breach_open: bool = field(default=False, init=False)
    _stability: tl.StabilityTracker = field(init=False)
    _over_limit_since: float | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self._stability = tl.StabilityTracker(self.scenario.recovery.stable_s)

    async def verify(self) -> tuple[bool, str]:
        """(steady, why not) before injecting."""
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

    async def watch(self, load: LoadGenerator, stop: asyncio.Event) -> None:
        """Every interval: probes + the users' SLI; breach, regain, stop conditions."""
        ss = self.scenario.steady_state
        for _ in range(1_000_000):
            if stop.is_set():
                return
            t = self.clock.now()
            results = await self.probes.run_all(ss.probes)
            sli = tl.window_sli(load.samples, t, ss.load.window_s,
                                load.oldest_inflight_age(),
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
            self.ticks.append({
                "t": round(t, 3), "ok": ok, "error_rate": sli.error_rate,
                "p99_ms": sli.p99_ms, "completed": sli.completed, "stalled": sli.stalled,
                "probes": [r.to_dict() for r in results]})
            self._track_state(t, ok, reasons)
            self._check_stop_condition(t, sli)
            self.alerts.deadman.check(t)
            snap = load.snapshot()
            self.progress.update(
                t=t, steady=ok, users=snap.users, sent=snap.sent, ok=snap.ok,
                failed=snap.failed, indeterminate=snap.indeterminate, inflight=snap.inflight,
                window_error_rate=sli.error_rate, window_p99_ms=sli.p99_ms,
                alerts=[a for a in self.alerts.tracker.firing_alerts() if a != WATCHDOG])
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=ss.interval_s)

    def _track_state(self, t: float, ok: bool, reasons: list[str]) -> None:
        injected = self.timeline.time_of(tl.FAULT_INJECTED)
        if injected is None:
            return
        if not ok:
            if not self.breach_open:
                relapse = self.timeline.time_of(tl.SLI_BREACH, after=injected) is not None
                self.event(tl.SLI_BREACH, t, reasons=reasons[:5], relapse=relapse)
                self.breach_open = True
            self._stability.observe(t, False)
            return
        if self.breach_open:
            regained = self._stability.observe(t, True)
            if regained is not None:
                self.event(tl.STEADY_STATE_REGAINED, regained)
                self.breach_open = False
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
