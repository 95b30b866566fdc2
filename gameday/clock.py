"""One clock per run: seconds since the run started, from the monotonic clock.

Every event, request sample and probe result is stamped with it, so that the
timeline's maths never mixes wall-clock jumps into durations. The wall-clock start is
kept to print absolute times in the report.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime


class Clock:
    def __init__(self) -> None:
        self._t0 = time.monotonic()
        self.started_at = datetime.now(UTC)

    def now(self) -> float:
        return time.monotonic() - self._t0

    def wall(self, t: float) -> datetime:
        """The wall-clock time of run-relative second `t`."""
        from datetime import timedelta

        return self.started_at + timedelta(seconds=t)


class FakeClock(Clock):
    """A clock tests move by hand."""

    def __init__(self, start: float = 0.0) -> None:
        super().__init__()
        self.t = start

    def now(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds
