"""The run's timeline and the numbers derived from it.

One timeline per scenario: fault injected → SLI breach → alert pending/firing →
runbook steps → steady state regained → alert resolved. Everything here is pure
(lists in, numbers out) so that time-to-detect, time-to-recover and the per-phase
statistics are unit-tested without a stack.

Definitions (also printed in the report):
- time_to_detect: first firing of an expected alert (seen by Prometheus polling or by
  Alertmanager's webhook, whichever is first) minus fault injection.
- time_to_notify: the same, counting only the webhook (a human would be paged).
- time_to_recover: steady state regained minus fault injection; 0 if the steady state
  never broke.
- recovery_after_fault_end: steady state regained minus the end of the fault (the
  moment it was rolled back; injection time for instantaneous faults). The recovery
  deadline applies to this one.
- phases: before = [load start, injection); during = [injection, max(fault end,
  steady state regained)); after = the rest until the load stops.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

# Event kinds, in the order they normally happen.
LOAD_STARTED = "load_started"
STEADY_STATE_VERIFIED = "steady_state_verified"
FAULT_INJECTED = "fault_injected"
SLI_BREACH = "sli_breach"
ALERT_PENDING = "alert_pending"
ALERT_FIRING = "alert_firing"
RUNBOOK_STEP = "runbook_step"
FAULT_REMOVED = "fault_removed"
STEADY_STATE_REGAINED = "steady_state_regained"
ALERT_RESOLVED = "alert_resolved"
STOP_CONDITION = "stop_condition"
LOAD_STOPPED = "load_stopped"
NOTE = "note"

PHASES = ("before", "during", "after")


@dataclass
class Event:
    t: float
    kind: str
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"t": round(self.t, 3), "kind": self.kind, **self.detail}


class Timeline:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def add(self, t: float, kind: str, **detail: Any) -> Event:
        event = Event(t, kind, detail)
        self.events.append(event)
        return event

    def sorted(self) -> list[Event]:
        return sorted(self.events, key=lambda e: e.t)

    def first(self, kind: str, after: float | None = None, **match: Any) -> Event | None:
        for event in self.sorted():
            if event.kind != kind or (after is not None and event.t < after):
                continue
            if all(event.detail.get(k) == v for k, v in match.items()):
                return event
        return None

    def time_of(self, kind: str, after: float | None = None, **match: Any) -> float | None:
        event = self.first(kind, after, **match)
        return event.t if event else None

    def last_time_of(self, kind: str, after: float | None = None) -> float | None:
        times = [e.t for e in self.events if e.kind == kind and (after is None or e.t >= after)]
        return max(times) if times else None

    def recovered_at(self, after: float) -> float | None:
        """The last steady-state-regained, if no breach came after it (a relapse)."""
        regained = self.last_time_of(STEADY_STATE_REGAINED, after)
        if regained is None:
            return None
        last_breach = self.last_time_of(SLI_BREACH, after)
        if last_breach is not None and last_breach > regained:
            return None
        return regained


@dataclass
class RequestSample:
    """One request of the load: when it started, how long it took, how it ended."""

    started: float
    latency_s: float
    op: str
    status: int | None
    #: ok (2xx) | failed (a definite HTTP error or nothing sent) | indeterminate
    #: (sent, no answer: timeout or reset)
    outcome: str
    error: str | None = None
    users: int = 0

    @property
    def ended(self) -> float:
        return self.started + self.latency_s


@dataclass
class PhaseStats:
    requests: int
    ok: int
    failed: int
    indeterminate: int
    success_rate: float | None
    p50_ms: float | None
    p99_ms: float | None
    throughput_rps: float | None
    error_kinds: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100): an observed value, never interpolated."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def phase_stats(samples: Iterable[RequestSample], start: float, end: float) -> PhaseStats:
    """Statistics of the samples that started in [start, end)."""
    chosen = [s for s in samples if start <= s.started < end]
    ok = [s for s in chosen if s.outcome == "ok"]
    failed = sum(1 for s in chosen if s.outcome == "failed")
    indeterminate = sum(1 for s in chosen if s.outcome == "indeterminate")
    latencies = [s.latency_s * 1000.0 for s in ok]
    errors = Counter(s.error or f"http_{s.status}" for s in chosen if s.outcome != "ok")
    span = end - start
    return PhaseStats(
        requests=len(chosen), ok=len(ok), failed=failed, indeterminate=indeterminate,
        success_rate=(len(ok) / len(chosen)) if chosen else None,
        p50_ms=_round(percentile(latencies, 50)), p99_ms=_round(percentile(latencies, 99)),
        throughput_rps=round(len(ok) / span, 2) if span > 0 else None,
        error_kinds=dict(errors.most_common()),
    )


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def phase_bounds(timeline: Timeline, end: float) -> dict[str, tuple[float, float]]:
    """[start, end) of before/during/after; see the module docstring."""
    start = timeline.time_of(LOAD_STARTED)
    start = 0.0 if start is None else start
    injected = timeline.time_of(FAULT_INJECTED)
    if injected is None:
        return {"before": (start, end), "during": (end, end), "after": (end, end)}
    fault_end = timeline.time_of(FAULT_REMOVED, after=injected)
    breach = timeline.time_of(SLI_BREACH, after=injected)
    regained = timeline.recovered_at(injected)
    if fault_end is None:
        during_end = end  # still held when the load stopped
    elif breach is None:
        during_end = fault_end  # users never noticed: the fault window is the phase
    elif regained is None:
        during_end = end  # never recovered
    else:
        during_end = max(fault_end, regained)
    during_end = min(max(during_end, injected), end)
    return {"before": (start, injected), "during": (injected, during_end),
            "after": (during_end, end)}


@dataclass
class RecoveryTimes:
    time_to_detect: float | None
    time_to_notify: float | None
    time_to_recover: float | None
    recovery_after_fault_end: float | None
    breached: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def recovery_times(timeline: Timeline, alert_names: Sequence[str]) -> RecoveryTimes:
    injected = timeline.time_of(FAULT_INJECTED)
    if injected is None:
        return RecoveryTimes(None, None, None, None, breached=False)
    firing = [e.t for e in timeline.events if e.kind == ALERT_FIRING and e.t >= injected
              and e.detail.get("alert") in alert_names]
    notified = [e.t for e in timeline.events if e.kind == ALERT_FIRING and e.t >= injected
                and e.detail.get("alert") in alert_names and e.detail.get("source") == "webhook"]
    breach = timeline.time_of(SLI_BREACH, after=injected)
    regained = timeline.recovered_at(injected)
    fault_end = timeline.time_of(FAULT_REMOVED, after=injected)
    if breach is None:
        ttr: float | None = 0.0
        after_end: float | None = 0.0
    else:
        ttr = (regained - injected) if regained is not None else None
        after_end = (max(0.0, regained - fault_end)
                     if regained is not None and fault_end is not None else None)
    return RecoveryTimes(
        time_to_detect=_round(min(firing) - injected) if firing else None,
        time_to_notify=_round(min(notified) - injected) if notified else None,
        time_to_recover=_round(ttr), recovery_after_fault_end=_round(after_end),
        breached=breach is not None,
    )


def alert_detection(timeline: Timeline, alert: str) -> dict[str, float | None]:
    """When one alert went pending, firing (per source) and resolved after injection."""
    injected = timeline.time_of(FAULT_INJECTED)
    if injected is None:
        return {"pending": None, "firing": None, "notified": None, "resolved": None}
    pending = timeline.time_of(ALERT_PENDING, after=injected, alert=alert)
    firing_events = [e for e in timeline.sorted() if e.kind == ALERT_FIRING
                     and e.t >= injected and e.detail.get("alert") == alert]
    firing = firing_events[0].t if firing_events else None
    notified = next((e.t for e in firing_events if e.detail.get("source") == "webhook"), None)
    resolved = (timeline.time_of(ALERT_RESOLVED, after=firing, alert=alert)
                if firing is not None else None)
    return {"pending": pending, "firing": firing, "notified": notified, "resolved": resolved}


class StabilityTracker:
    """Steady state regained = the start of the first run of passing checks that lasts
    `stable_s`. Fed one check at a time, live, by the engine; pure, for the tests."""

    def __init__(self, stable_s: float) -> None:
        self.stable_s = stable_s
        self.streak_start: float | None = None
        self.regained_at: float | None = None

    def observe(self, t: float, ok: bool) -> float | None:
        """Returns the regained time once the streak is long enough."""
        if not ok:
            self.streak_start = None
            self.regained_at = None
            return None
        if self.streak_start is None:
            self.streak_start = t
        if self.regained_at is None and t - self.streak_start >= self.stable_s:
            self.regained_at = self.streak_start
        return self.regained_at


@dataclass
class WindowSli:
    completed: int
    error_rate: float | None
    p99_ms: float | None
    stalled: bool


def window_sli(samples: Sequence[RequestSample], now: float, window_s: float,
               inflight_oldest_age_s: float | None, stall_after_s: float) -> WindowSli:
    """The users' view over the last `window_s`: error rate and p99 of requests that
    ended in the window; `stalled` when nothing ends while requests hang."""
    recent = [s for s in samples if now - window_s <= s.ended <= now]
    errors = sum(1 for s in recent if s.outcome != "ok")
    latencies = [s.latency_s * 1000.0 for s in recent]
    stalled = (inflight_oldest_age_s is not None and inflight_oldest_age_s > stall_after_s)
    return WindowSli(
        completed=len(recent),
        error_rate=(errors / len(recent)) if recent else None,
        p99_ms=percentile(latencies, 99), stalled=stalled,
    )


def per_second_series(samples: Iterable[RequestSample], end: float) -> list[dict[str, Any]]:
    """Requests bucketed by start second: counts by outcome and p99 of the ok ones."""
    buckets: dict[int, list[RequestSample]] = {}
    for s in samples:
        buckets.setdefault(int(s.started), []).append(s)
    series = []
    for second in range(0, int(math.ceil(end)) + 1):
        chosen = buckets.get(second, [])
        ok = [x.latency_s * 1000.0 for x in chosen if x.outcome == "ok"]
        series.append({
            "t": second, "requests": len(chosen), "ok": len(ok),
            "failed": sum(1 for x in chosen if x.outcome == "failed"),
            "indeterminate": sum(1 for x in chosen if x.outcome == "indeterminate"),
            "p99_ms": _round(percentile(ok, 99)),
            "users": max((x.users for x in chosen), default=0),
        })
    return series


def by_concurrency(samples: Iterable[RequestSample]) -> dict[int, PhaseStats]:
    """Statistics per concurrent-users level (for the concurrency table)."""
    return merge_concurrency([list(samples)])


def merge_concurrency(runs: Sequence[Sequence[RequestSample]]) -> dict[int, PhaseStats]:
    """Per users level over several scenarios' samples. Each scenario has its own clock,
    so throughput is total ok / the sum of each scenario's time at that level, and the
    percentiles are over all samples together."""
    levels: dict[int, list[RequestSample]] = {}
    spans: dict[int, float] = {}
    for samples in runs:
        groups: dict[int, list[RequestSample]] = {}
        for s in samples:
            groups.setdefault(s.users, []).append(s)
        for users, chosen in groups.items():
            levels.setdefault(users, []).extend(chosen)
            spans[users] = spans.get(users, 0.0) + (max(s.started for s in chosen)
                                                    - min(s.started for s in chosen))
    out = {}
    for users, chosen in sorted(levels.items()):
        stats = phase_stats(chosen, float("-inf"), float("inf"))
        stats.throughput_rps = round(stats.ok / spans[users], 2) if spans[users] > 0 else None
        out[users] = stats
    return out
