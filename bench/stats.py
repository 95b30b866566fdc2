"""Pure arithmetic of a benchmark point: outcome kinds, percentiles, status labels."""

from __future__ import annotations

import math
from collections.abc import Sequence

OK = "ok"
#: nginx's limit_req answers 429: the stack protecting itself, not the app failing,
#: so it is counted apart from the app's own errors.
RATE_LIMITED = "rate_limited_429"


def classify_status(status: int, expected: int) -> str:
    """Outcome kind of a completed HTTP exchange."""
    if status == expected:
        return OK
    if status == 429:
        return RATE_LIMITED
    return f"http_{status}"


def percentile(sorted_values: Sequence[float], pct: float) -> float | None:
    """Nearest-rank percentile of an ascending sequence; None when it is empty.

    Nearest rank (not interpolation) so that p99 is always a latency some request
    really had.
    """
    if not 0 < pct <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {pct}")
    if not sorted_values:
        return None
    rank = math.ceil(pct / 100 * len(sorted_values))
    return sorted_values[max(0, rank - 1)]


def latency_summary_ms(latencies_s: Sequence[float]) -> dict[str, float | None]:
    """mean / p50 / p95 / p99 / max in milliseconds (None for no samples)."""
    ordered = sorted(latencies_s)

    def ms(value: float | None) -> float | None:
        return None if value is None else round(value * 1000.0, 2)

    return {
        "mean": ms(sum(ordered) / len(ordered)) if ordered else None,
        "p50": ms(percentile(ordered, 50)),
        "p95": ms(percentile(ordered, 95)),
        "p99": ms(percentile(ordered, 99)),
        "max": ms(ordered[-1]) if ordered else None,
    }


def success_rate(ok: int, total: int) -> float:
    return ok / total if total else 0.0


def format_rate(ok: int, total: int) -> str:
    """'100%' only when every request succeeded: 99.96% must not print as 100%."""
    if total == 0:
        return "n/a"
    if ok == total:
        return "100%"
    pct = 100.0 * ok / total
    if ok == 0:
        return "0%"
    return f"{min(pct, 99.9):.1f}%" if pct >= 0.1 else "<0.1%"


def system_status(ok: int, total: int, healthy_at: float) -> str:
    """The chaos report's vocabulary: Healthy / Degraded / Failing / Failed.

    Healthy means the stack's own availability SLO was met at this point; the
    report's 60 % was "Degraded", 20 % "Failing", 0 % "Failed".
    """
    if total == 0 or ok == 0:
        return "Failed"
    rate = ok / total
    if rate >= healthy_at:
        return "Healthy"
    if rate >= 0.5:
        return "Degraded"
    return "Failing"


def ratio(numerator: float, denominator: float) -> float | None:
    """numerator ÷ denominator; None when the denominator is 0 (rendered as ∞ or —)."""
    if denominator == 0:
        return None
    return numerator / denominator


def format_ratio(numerator: float, denominator: float) -> str:
    value = ratio(numerator, denominator)
    if value is None:
        return "—" if numerator == 0 else "∞"
    return f"{value:.2f}×" if value < 10 else f"{value:.0f}×"
