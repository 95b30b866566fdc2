"""What a run produced: one PointResult per (configuration, variant, N), plus bounds."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.bounds import BoundResult
from bench.load import LoadOutcome
from bench.stats import OK, latency_summary_ms, ratio, success_rate

CONFIGURATIONS = ("stack", "sqlite-default", "sqlite-tuned")
PEERS = CONFIGURATIONS[1:]


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
        return cls(
            config=config, variant=variant, n=n, requests=load.requests, ok=load.ok,
            errors={k: v for k, v in sorted(load.kinds.items()) if k != OK},
            elapsed_s=round(load.elapsed_s, 3),
            latency_ms=latency_summary_ms(load.latencies_s),
            ok_latency_ms=latency_summary_ms(load.ok_latencies_s),
            acked_creates=load.created, users=users, audit=audit,
            client_cpu_cores=round(load.client_cpu_s / load.elapsed_s, 3)
            if load.elapsed_s else 0.0,
            cpu_cores=cpu_cores, lock_errors=lock_errors)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(success_rate=round(self.success_rate, 5),
                    ok_per_s=round(self.ok_per_s, 1),
                    users_match_audit=self.users_match_audit)
        return data


@dataclass
class BenchResult:
    stack: str
    started_at: str
    finished_at: str
    options: dict[str, Any]
    machine: dict[str, Any]
    configurations: dict[str, str]
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
            "schema": 1,
            "stack": self.stack,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "options": self.options,
            "machine": self.machine,
            "configurations": self.configurations,
            "points": [p.to_dict() for p in self.points],
            "ratios": ratio_rows(self.points),
            "bounds": [b.to_dict() for b in self.bounds],
            "integrity": {
                "users_match_audit": {
                    c: all(p.users_match_audit for p in self.points if p.config == c)
                    for c in CONFIGURATIONS},
            },
            "notes": self.notes,
        }


def ratio_rows(points: list[PointResult]) -> list[dict[str, Any]]:
    """Per (variant, N): each configuration's numbers and stack ÷ each SQLite peer.

    Ratios are of successful creates (or reads) per second; None when the peer had
    none (the report prints ∞). Rows appear only where the stack was measured.
    """
    index = {(p.config, p.variant, p.n): p for p in points}
    rows = []
    keys = sorted({(p.variant, p.n) for p in points if p.config == "stack"},
                  key=lambda k: (k[0] != "write", k[1]))
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
    default = [p for p in points if p.config == "sqlite-default" and p.variant == "write"]
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
