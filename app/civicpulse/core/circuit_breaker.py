"""A small thread-safe circuit breaker, one per worker process.

closed -> (N consecutive failures) -> open -> (cool-down elapsed) -> half-open:
exactly one caller is let through as a probe; success closes, failure re-opens.

With a `probe` the breaker also tries the dependency by itself once the cool-down has
elapsed. Without it, an open breaker on a worker that gets no cache traffic stays open
(and AppCacheCircuitOpen firing) long after Redis is back: measured in CI, where a
GameDay stopped with its load and the next one refused to start.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

Scheduler = Callable[[float, Callable[[], None]], None]


def _daemon_timer(delay_s: float, func: Callable[[], None]) -> None:
    timer = threading.Timer(delay_s, func)
    timer.daemon = True  # never keeps a stopping worker alive
    timer.start()

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


class CircuitBreaker:
    def __init__(self, failure_threshold: int, reset_after_s: float,
                 on_state_change: Callable[[str], None] | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 probe: Callable[[], object] | None = None,
                 schedule: Scheduler = _daemon_timer) -> None:
        self.failure_threshold = failure_threshold
        self.reset_after_s = reset_after_s
        self._on_state_change = on_state_change
        self._clock = clock
        self._lock = threading.Lock()
        self._state = CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probe_in_flight = False
        self._probe = probe
        self._schedule = schedule
        self._background_pending = False

    @property
    def state(self) -> str:
        with self._lock:
            return self._state

    def allow(self) -> bool:
        """Whether the caller may try the protected dependency now."""
        with self._lock:
            if self._state == CLOSED:
                return True
            if self._state == OPEN:
                if self._clock() - self._opened_at < self.reset_after_s:
                    return False
                self._set_state(HALF_OPEN)
            if self._probe_in_flight:
                return False
            self._probe_in_flight = True
            return True

    def record_success(self) -> None:
        with self._lock:
            self._failures = 0
            self._probe_in_flight = False
            if self._state != CLOSED:
                self._set_state(CLOSED)

    def record_failure(self) -> None:
        with self._lock:
            self._probe_in_flight = False
            self._failures += 1
            if self._state == HALF_OPEN or self._failures >= self.failure_threshold:
                self._opened_at = self._clock()
                if self._state != OPEN:
                    self._set_state(OPEN)
                self._schedule_background_probe()

    def _schedule_background_probe(self) -> None:
        # Called with the lock held; at most one pending probe per breaker.
        if self._probe is None or self._background_pending:
            return
        self._background_pending = True
        self._schedule(self.reset_after_s, self._background_probe)

    def _background_probe(self) -> None:
        with self._lock:
            self._background_pending = False
            if self._state == CLOSED:
                return
        if not self.allow():
            # Re-opened meanwhile (a fresh cool-down) or a caller's probe is in flight:
            # look again later; its outcome may close the breaker first.
            with self._lock:
                if self._state != CLOSED:
                    self._schedule_background_probe()
            return
        assert self._probe is not None
        try:
            self._probe()
        except Exception:  # noqa: BLE001 - any failure of the dependency re-opens
            self.record_failure()
        else:
            self.record_success()

    def _set_state(self, state: str) -> None:
        self._state = state
        if self._on_state_change is not None:
            self._on_state_change(state)
