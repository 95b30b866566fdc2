"""What one benchmark run measures, validated before anything starts.

Every load loop is bounded twice (duration and request count) and every request by a
timeout, so a run always ends on its own whatever the servers do.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

FULL_NS = (1, 5, 10, 20, 50, 100, 200, 500, 1000)
QUICK_NS = (1, 20, 200)
#: The chaos report's concurrency table has these rows.
REPORT_NS = (1, 5, 10, 20)
#: What the load does: `write` is the API's create (one statement on PostgreSQL),
#: `report-pattern` the report's read-then-write ORM transaction (its own URL),
#: `read-mix` one create to four reads.
WRITE, REPORT_PATTERN, READ_MIX = "write", "report-pattern", "read-mix"
VARIANTS = (WRITE, REPORT_PATTERN, READ_MIX)
#: A quick run (CI) measures the report's pattern where the report did its damage.
QUICK_REPORT_PATTERN_NS = (1, 20)
#: Above this the single load process would need more sockets than the peers' listen
#: backlog (Gunicorn's default 2048) and the report's range ends at 1000 anyway.
MAX_N = 1000
MAX_DURATION_S = 300.0


class BenchError(ValueError):
    """A bad argument or a missing prerequisite; the message says what to fix."""


@dataclass(frozen=True)
class BenchOptions:
    ns: tuple[int, ...]
    duration_s: float
    variants: tuple[str, ...]
    #: Upper bound on requests per point (per configuration, per N).
    max_requests: int
    #: Per request, client side. Above nginx's proxy_read_timeout (15 s) so that the
    #: stack's own timeout answers first and shows up as a 504, not a client timeout.
    timeout_s: float
    #: Pause between points so queues and TIME_WAIT sockets of one point drain first.
    settle_s: float
    quick: bool
    #: N values a variant runs at, where fewer than `ns` (the quick run's report pattern).
    variant_ns: dict[str, tuple[int, ...]]
    #: Client counts for the two bounds (pgbench through PgBouncer, wrk through nginx).
    pgbench_clients: tuple[int, ...]
    wrk_connections: tuple[int, ...]
    bounds: bool = True

    def ns_for(self, variant: str) -> tuple[int, ...]:
        return self.variant_ns.get(variant, self.ns)


def parse_ns(text: str | Iterable[int] | None) -> tuple[int, ...] | None:
    """'1,5,20' (or a list of ints) -> (1, 5, 20); None stays None (use the defaults)."""
    if text is None:
        return None
    if isinstance(text, str):
        parts = [p.strip() for p in text.split(",")]
        if not text.strip() or any(not p for p in parts):
            raise BenchError(f"--ns: {text!r} is not a comma-separated list of user counts, "
                             "e.g. 1,5,20")
        values = []
        for part in parts:
            try:
                values.append(int(part))
            except ValueError:
                raise BenchError(f"--ns: {part!r} is not an integer (in {text!r})") from None
    else:
        values = list(text)
        if not values:
            raise BenchError("--ns: the list of user counts is empty")
        for v in values:
            if isinstance(v, bool) or not isinstance(v, int):
                raise BenchError(f"--ns: {v!r} is not an integer")
    bad = [v for v in values if not 1 <= v <= MAX_N]
    if bad:
        raise BenchError(f"--ns: every user count must be between 1 and {MAX_N}; got "
                         f"{', '.join(map(str, bad))}")
    dupes = sorted({v for v in values if values.count(v) > 1})
    if dupes:
        raise BenchError(f"--ns: {', '.join(map(str, dupes))} listed more than once")
    return tuple(sorted(values))


def make_options(quick: bool = False, ns: str | Iterable[int] | None = None,
                 duration_s: float | None = None, variants: Iterable[str] | None = None,
                 max_requests: int | None = None, timeout_s: float | None = None,
                 bounds: bool = True) -> BenchOptions:
    """Defaults for a full or quick run, overridden by whatever the caller gives."""
    chosen_ns = parse_ns(ns) or (QUICK_NS if quick else FULL_NS)
    if duration_s is None:
        duration_s = 3.0 if quick else 10.0
    if isinstance(duration_s, bool) or not isinstance(duration_s, int | float):
        raise BenchError(f"--duration: {duration_s!r} is not a number of seconds")
    if not 0 < duration_s <= MAX_DURATION_S:
        raise BenchError(f"--duration: must be > 0 and <= {MAX_DURATION_S:g} seconds per "
                         f"point; got {duration_s:g}")
    chosen_variants = tuple(variants) if variants is not None else (
        (WRITE, REPORT_PATTERN) if quick else VARIANTS)
    unknown = [v for v in chosen_variants if v not in VARIANTS]
    if unknown or not chosen_variants:
        raise BenchError(f"--patterns: known patterns are {', '.join(VARIANTS)}; got "
                         f"{', '.join(unknown) or 'none'}")
    if max_requests is None:
        max_requests = 10_000 if quick else 30_000
    if max_requests < 1:
        raise BenchError(f"--max-requests: must be >= 1; got {max_requests}")
    if timeout_s is None:
        timeout_s = 20.0
    if not 0 < timeout_s <= 120:
        raise BenchError(f"--timeout: must be > 0 and <= 120 seconds; got {timeout_s:g}")
    return BenchOptions(
        ns=chosen_ns, duration_s=float(duration_s), variants=chosen_variants,
        max_requests=int(max_requests), timeout_s=float(timeout_s),
        settle_s=0.5 if quick else 1.0, quick=quick,
        variant_ns={REPORT_PATTERN: tuple(n for n in chosen_ns if n in QUICK_REPORT_PATTERN_NS)
                    or chosen_ns} if quick else {},
        pgbench_clients=(20,) if quick else (1, 20, 100),
        wrk_connections=(50,) if quick else (1, 20, 200),
        bounds=bounds,
    )
