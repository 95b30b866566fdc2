"""The rows of the report's tables, shared by the Markdown and HTML views."""

from __future__ import annotations

from typing import Any

from gameday.results import GamedayRun, ScenarioResult


def seconds(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}s"


def percent(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def millis(value: float | None) -> str:
    return "–" if value is None else f"{value:.0f} ms"


def verdict_rows(run: GamedayRun) -> list[dict[str, str]]:
    return [{
        "scenario": r.id, "fault": f"{r.fault} ({r.target})", "status": r.status,
        "score": "–" if not r.score else f"{r.score['score']:.0f}",
        "reason": r.reason or "",
    } for r in run.results]


def failure_rows(run: GamedayRun) -> list[dict[str, str]]:
    """Failure type × detection time × recovery time × success rate."""
    rows = []
    for r in run.results:
        if not r.ran:
            continue
        times = r.times
        during = r.phases.get("during")
        rows.append({
            "failure type": r.title,
            "detected (TTD)": seconds(times.time_to_detect if times else None),
            "notified": seconds(times.time_to_notify if times else None),
            "recovered (TTR)": seconds(times.time_to_recover if times else None),
            "success before": percent(_rate(r, "before")),
            "success during": percent(during.success_rate if during else None),
            "success after": percent(_rate(r, "after")),
            "hypothesis": "holds" if r.status == "held" else "FALSIFIED",
        })
    return rows


def _rate(r: ScenarioResult, phase: str) -> float | None:
    stats = r.phases.get(phase)
    return stats.success_rate if stats else None


def concurrency_rows(run: GamedayRun) -> list[dict[str, Any]]:
    """Concurrent users × success rate × latency (fault-free traffic of every scenario)."""
    return [{"users": users, "requests": s.requests, "success_rate": s.success_rate,
             "p50_ms": s.p50_ms, "p99_ms": s.p99_ms, "throughput_rps": s.throughput_rps}
            for users, s in sorted(run.concurrency.items()) if users > 0]



def concurrency_table_rows(run: GamedayRun) -> list[dict[str, Any]]:
    """`concurrency_rows` as both views show them: percentages and milliseconds."""
    return [{"concurrent users": r["users"], "requests": r["requests"],
             "success rate": percent(r["success_rate"]), "p50": millis(r["p50_ms"]),
             "p99": millis(r["p99_ms"]), "ok/s": r["throughput_rps"]}
            for r in concurrency_rows(run)]

def phase_rows(r: ScenarioResult) -> list[dict[str, str]]:
    rows = []
    for name in ("before", "during", "after"):
        s = r.phases.get(name)
        if s is None:
            continue
        errors = ", ".join(f"{k}×{v}" for k, v in list(s.error_kinds.items())[:4])
        rows.append({"phase": name, "requests": str(s.requests),
                     "success": percent(s.success_rate), "p50": millis(s.p50_ms),
                     "p99": millis(s.p99_ms), "indeterminate": str(s.indeterminate),
                     "errors": errors or "–"})
    return rows


def write_rows(run: GamedayRun) -> list[dict[str, str]]:
    rows = []
    for r in run.results:
        rec = r.reconciliation
        if rec is None:
            continue
        rows.append({
            "scenario": r.id, "writes": str(rec.writes), "acknowledged": str(rec.acknowledged),
            "lost acknowledged": str(rec.lost_acknowledged_writes),
            "landed after failure": str(len(rec.landed_despite_failure)),
            "landed after timeout": str(len(rec.landed_despite_indeterminate)),
            "audit mismatches": str(rec.audit_mismatches),
            "checked": "ERROR: " + rec.error if rec.error else rec.source,
        })
    return rows
