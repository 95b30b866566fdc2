"""What a run produced: one PointResult per (configuration, variant, N), plus bounds."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.bounds import BoundResult
from bench.load import LoadOutcome
from bench.options import REPORT_PATTERN, VARIANTS, WRITE
from bench.stats import OK, latency_summary_ms, ratio, success_rate

CONFIGURATIONS = ("stack", "sqlite-default", "sqlite-tuned", "sqlite-durable")
PEERS = CONFIGURATIONS[1:]
#: The chaos report's own configuration: the app on SQLite with Django's defaults.
REPORT_CONFIGURATION = "sqlite-default"


@dataclass
class PointResult:
    config: str
    variant: str
    n: int
    requests: int
    ok: int
    errors: dict[str, int]
    elapsed_s: float
    latency_ms: dict[str, float | None]
    ok_latency_ms: dict[str, float | None]
    #: 201s the client saw; rows can only be >= this (a request that timed out on the
    #: client may still have committed).
    acked_creates: int
    users: int
    audit: int
    client_cpu_cores: float
    cpu_cores: dict[str, float] = field(default_factory=dict)
    #: Peers only: app log lines naming SQLite lock errors during the point.
    lock_errors: int | None = None
    #: Database errors the app named in its 503 responses (report pattern), by message.
    db_errors: dict[str, int] = field(default_factory=dict)

    @property
    def success_rate(self) -> float:
        return success_rate(self.ok, self.requests)

    @property
    def ok_per_s(self) -> float:
        return self.ok / self.elapsed_s if self.elapsed_s else 0.0

    @property
    def users_match_audit(self) -> bool:
        return self.users == self.audit

    @classmethod
    def from_load(cls, config: str, variant: str, n: int, load: LoadOutcome, users: int,
                  audit: int, cpu_cores: dict[str, float],
                  lock_errors: int | None) -> PointResult:
        """One point from what the load saw, the rows counted and the CPU meters."""
        return cls(
            config=config, variant=variant, n=n, requests=load.requests, ok=load.ok,
            errors={k: v for k, v in sorted(load.kinds.items()) if k != OK},
            elapsed_s=round(load.elapsed_s, 3),
            latency_ms=latency_summary_ms(load.latencies_s),
            ok_latency_ms=latency_summary_ms(load.ok_latencies_s),
            acked_creates=load.created, users=users, audit=audit,
            client_cpu_cores=round(load.client_cpu_s / load.elapsed_s, 3)
            if load.elapsed_s else 0.0,
            cpu_cores=cpu_cores, lock_errors=lock_errors, db_errors=dict(load.db_errors))

    def to_dict(self) -> dict[str, Any]:
        """One record of results.json: configuration × pattern × N (schema 2)."""
        lat = self.latency_ms
        return {
            "configuration": self.config, "pattern": self.variant, "users": self.n,
            "requests": self.requests, "ok": self.ok,
            "success_rate": round(self.success_rate, 5), "ok_per_s": round(self.ok_per_s, 1),
            "mean_ms": lat["mean"], "p50_ms": lat["p50"], "p95_ms": lat["p95"],
            "p99_ms": lat["p99"], "max_ms": lat["max"], "ok_latency_ms": self.ok_latency_ms,
            "errors": self.errors,
            "lock_errors": {"responses": self.db_errors, "log_lines": self.lock_errors},
            "acked_creates": self.acked_creates, "users_rows": self.users,
            "audit_rows": self.audit, "users_match_audit": self.users_match_audit,
            "elapsed_s": self.elapsed_s, "client_cpu_cores": self.client_cpu_cores,
            "cpu_cores": self.cpu_cores,
        }


@dataclass
class BenchResult:
    stack: str
    started_at: str
    finished_at: str
    options: dict[str, Any]
    machine: dict[str, Any]
    configurations: dict[str, str]
    #: Per configuration: does an acknowledged write survive a power loss, and why.
    durability: dict[str, dict[str, Any]]
    points: list[PointResult]
    bounds: list[BoundResult]
    out_dir: Path
    notes: list[str] = field(default_factory=list)

    def point(self, config: str, variant: str, n: int) -> PointResult | None:
        for p in self.points:
            if (p.config, p.variant, p.n) == (config, variant, n):
                return p
        return None

    @property
    def stack_integrity_ok(self) -> bool:
        return all(p.users_match_audit for p in self.points if p.config == "stack")

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": 2,
            "stack": self.stack,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "options": self.options,
            "machine": self.machine,
            "configurations": self.configurations,
            "durability": self.durability,
            "points": [p.to_dict() for p in self.points],
            "ratios": ratio_rows(self.points),
            "bounds": [b.to_dict() for b in self.bounds],
            "combined_bound_per_s": combined_bound(self.bounds),
            "integrity": {
                "users_match_audit": {
                    c: all(p.users_match_audit for p in self.points if p.config == c)
                    for c in CONFIGURATIONS},
            },
            "notes": self.notes,
        }


def best_bound(bounds: list[BoundResult], tool: str) -> BoundResult | None:
    ok = [b for b in bounds if b.tool == tool and b.ok]
    return max(ok, key=lambda b: b.per_s) if ok else None


def combined_bound(bounds: list[BoundResult]) -> float | None:
    """What the app path could reach if it cost nothing but its two halves.

    A create needs the database's transaction (pgbench's floor) and the web path
    (nginx → Gunicorn → Django without a view: the no-I/O ceiling) on the same two
    cores, so their times add: 1 / (1/floor + 1/ceiling).
    """
    floor, ceiling = best_bound(bounds, "pgbench"), best_bound(bounds, "wrk django-404")
    if not floor or not ceiling or floor.per_s <= 0 or ceiling.per_s <= 0:
        return None
    return round(1.0 / (1.0 / floor.per_s + 1.0 / ceiling.per_s), 1)


def ratio_rows(points: list[PointResult]) -> list[dict[str, Any]]:
    """Per (variant, N): each configuration's numbers and stack ÷ each SQLite peer.

    Ratios are of successful creates (or reads) per second; None when the peer had
    none (the report prints ∞). Rows appear only where the stack was measured.
    """
    index = {(p.config, p.variant, p.n): p for p in points}
    rows = []
    order = {v: i for i, v in enumerate(VARIANTS)}
    keys = sorted({(p.variant, p.n) for p in points if p.config == "stack"},
                  key=lambda k: (order.get(k[0], len(order)), k[1]))
    for variant, n in keys:
        stack = index[("stack", variant, n)]
        row: dict[str, Any] = {"variant": variant, "n": n, "ok_per_s": {}, "success_rate": {},
                               "p99_ms": {}}
        for config in CONFIGURATIONS:
            p = index.get((config, variant, n))
            if p is not None:
                row["ok_per_s"][config] = round(p.ok_per_s, 1)
                row["success_rate"][config] = round(p.success_rate, 5)
                row["p99_ms"][config] = p.latency_ms["p99"]
        for peer in PEERS:
            p = index.get((peer, variant, n))
            key = f"stack_over_{peer.replace('-', '_')}"
            value = ratio(stack.ok_per_s, p.ok_per_s) if p else None
            row[key] = None if value is None else round(value, 3)
        rows.append(row)
    return rows


def derive_notes(points: list[PointResult],
                 bounds: list[BoundResult] | None = None) -> list[str]:
    """Plain-language findings that follow from the numbers alone."""
    notes = []
    client_peak = max((p.client_cpu_cores for p in points), default=0.0)
    if client_peak >= 0.9:
        notes.append(f"The load client reached {client_peak:.2f} cores (one process can use "
                     "1): at that point it may have limited the load; read those rows with "
                     "care.")
    else:
        notes.append(f"The load client used at most {client_peak:.2f} cores (one process "
                     "can use 1): it was not the bottleneck.")
    default = [p for p in points if p.config == REPORT_CONFIGURATION and p.variant == WRITE]
    if default:
        locks = sum(p.lock_errors or 0 for p in default)
        worst = min(default, key=lambda p: p.success_rate)
        if locks == 0 and worst.success_rate == 1.0:
            notes.append(
                "SQLite with Django's defaults logged no `database is locked` on the write "
                "path: the app's create transaction starts with its INSERT, so a writer "
                "waits for the lock (5 s busy timeout) instead of deadlocking on a "
                "read-to-write lock upgrade as the report's read-then-write ORM code did, "
                "and with sync workers no more writers wait than there are workers. Its "
                "limit shows as throughput and latency, not errors.")
        elif locks:
            notes.append(f"SQLite with Django's defaults logged `database is locked` "
                         f"{locks} times on the write path; its worst point was N = "
                         f"{worst.n} at {100 * worst.success_rate:.1f}% success.")
    notes += _report_pattern_notes(points)
    stack = [p for p in points if p.config == "stack"]
    limited = sum(p.errors.get("rate_limited_429", 0) for p in stack)
    if limited:
        notes.append(f"nginx's rate limit answered 429 to {limited} requests to the stack: "
                     "the limit (per client address, and all load comes from one address) "
                     "is below what the stack can serve.")
    capped = [b for b in bounds or [] if b.tool.startswith("wrk") and "HTTP 429" in b.note]
    if capped:
        worst = max(capped, key=lambda b: b.failed)
        notes.append(f"wrk ({worst.tool}, {worst.concurrency} connections) was answered 429 "
                     f"{worst.failed} times: nginx's per-address rate limit caps the web "
                     "ceiling, so the real ceiling is higher than the table shows.")
    return notes


def _report_pattern_notes(points: list[PointResult]) -> list[str]:
    """Whether the report's failure was reproduced, and whether the stack fixed it."""
    notes = []
    report = sorted((p for p in points if p.config == REPORT_CONFIGURATION
                     and p.variant == REPORT_PATTERN), key=lambda p: p.n)
    if report:
        locked = sum(sum(p.db_errors.values()) for p in report)
        logged = sum(p.lock_errors or 0 for p in report)
        curve = ", ".join(f"{100 * p.success_rate:.0f}% at N = {p.n}" for p in report)
        falls = len(report) > 1 and report[-1].success_rate < report[0].success_rate
        notes.append(
            f"The report's pattern on the report's configuration: {curve}"
            f"{' (success falls with N, as in the report)' if falls else ''}; the app "
            f"answered 503 naming a SQLite lock error {locked} times and logged one "
            f"{logged} times.")
    stack = [p for p in points if p.config == "stack" and p.variant == REPORT_PATTERN]
    if stack:
        all_ok = all(p.success_rate == 1.0 and p.users_match_audit for p in stack)
        worst = min(stack, key=lambda p: p.success_rate)
        notes.append(
            "The same pattern on the stack: "
            + ("100% success with users == audit rows at every N." if all_ok else
               f"worst {100 * worst.success_rate:.1f}% at N = {worst.n}"
               f"{'' if worst.users_match_audit else ', users != audit rows'}."))
    return notes
