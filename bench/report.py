"""Markdown, JSON and SVG output of a run, in the chaos report's table format."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.bounds import BoundResult
from bench.options import REPORT_NS, REPORT_PATTERN, WRITE
from bench.results import (
    CONFIGURATIONS,
    REPORT_CONFIGURATION,
    BenchResult,
    PointResult,
    best_bound,
    combined_bound,
    ratio_rows,
)
from bench.stats import format_rate, format_ratio, system_status
from bench.svg import HLine, Series, line_chart

COLORS = {"stack": "#1b7837", "sqlite-default": "#d73027", "sqlite-tuned": "#4575b4",
          "sqlite-durable": "#984ea3"}
VARIANT_TITLES = {
    "write": "write path (POST /api/users/: user + audit in one statement on PostgreSQL, "
             "one transaction on SQLite)",
    "report-pattern": "the report's pattern (POST /api/report-pattern/users/: atomic() ORM "
                      "block, existence check, then user + audit)",
    "read-mix": "read mix (1 create : 4 GET /api/users/<id>/)"}
CPU_COLUMNS = ("client", "nginx", "app", "supervisord", "pgbouncer", "postgresql", "redis",
               "other", "machine", "idle", "iowait")
#: The chaos report's "Performance Under Stress" table, as published (SQLite).
REPORT_PUBLISHED = {1: ("100%", "50ms", "Healthy"), 5: ("60%", "200ms", "Degraded"),
                    10: ("20%", "2000ms+", "Failing"), 20: ("0%", "Timeout", "Failed")}


def _ms(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.0f} ms" if value >= 10 else f"{value:.1f} ms"


def format_errors(point: PointResult) -> str:
    if not point.errors:
        return "—"
    parts = []
    for kind, count in sorted(point.errors.items(), key=lambda kv: -kv[1]):
        text = f"{kind} ×{count}"
        if kind == "http_503":
            named = [f"{m} ×{n}" for m, n in sorted(point.db_errors.items())]
            if point.lock_errors:
                named.append(f"lock errors logged ×{point.lock_errors}")
            if named:
                text += f" ({', '.join(named)})"
        parts.append(text)
    return ", ".join(parts)


def report_table(result: BenchResult, healthy_at: float) -> list[str]:
    """The report's own table (N = 1, 5, 10, 20) next to what this run measured.

    Measured: the report's pattern on the report's configuration (the failure
    reproduced) and the same pattern on the stack (the fix)."""
    lines = [
        "| Concurrent Users | Report: Success Rate | Report: Avg Response Time "
        "| Report: System Status | Measured (report's configuration): Success Rate "
        "| Avg Response Time | System Status | Errors | Stack, same pattern: Success Rate "
        "| Avg Response Time | System Status | Users / Audit rows |",
        "|---:|---:|---:|---|---:|---:|---|---|---:|---:|---|---:|",
    ]
    for n in REPORT_NS:
        ours = result.point(REPORT_CONFIGURATION, REPORT_PATTERN, n)
        stack = result.point("stack", REPORT_PATTERN, n)
        if ours is None and stack is None:
            continue
        published = " | ".join(REPORT_PUBLISHED[n])

        def cells(p: PointResult | None) -> str:
            if p is None:
                return "— | — | —"
            return (f"{format_rate(p.ok, p.requests)} | {_ms(p.latency_ms['mean'])} "
                    f"| {system_status(p.ok, p.requests, healthy_at)}")

        errors = format_errors(ours) if ours else "—"
        rows = f"{stack.users} / {stack.audit}" if stack else "—"
        lines.append(f"| {n} | {published} | {cells(ours)} | {errors} | {cells(stack)} "
                     f"| {rows} |")
    return lines


def performance_table(points: list[PointResult], healthy_at: float) -> list[str]:
    """The report's 'Performance Under Stress' table, with the measured extras after it."""
    lines = [
        "| Concurrent Users | Success Rate | Avg Response Time | System Status | ok/s "
        "| p50 | p95 | p99 | Errors | Users / Audit rows | Client CPU |",
        "|---:|---:|---:|---|---:|---:|---:|---:|---|---:|---:|",
    ]
    for p in sorted(points, key=lambda p: p.n):
        match = "" if p.users_match_audit else " ⚠"
        lines.append(
            f"| {p.n} | {format_rate(p.ok, p.requests)} | {_ms(p.latency_ms['mean'])} "
            f"| {system_status(p.ok, p.requests, healthy_at)} | {p.ok_per_s:.0f} "
            f"| {_ms(p.latency_ms['p50'])} | {_ms(p.latency_ms['p95'])} "
            f"| {_ms(p.latency_ms['p99'])} | {format_errors(p)} "
            f"| {p.users} / {p.audit}{match} | {p.client_cpu_cores:.2f} cores |")
    return lines


def ratio_table(result: BenchResult) -> list[str]:
    floor = best_bound(result.bounds, "pgbench")
    ceiling = best_bound(result.bounds, "wrk django-404")
    combined = combined_bound(result.bounds)
    peers = CONFIGURATIONS[1:]
    lines = [
        "| Pattern | N | stack ok/s | " + " | ".join(f"{p} ok/s | stack ÷ {p.split('-')[1]}"
                                               for p in peers)
        + " | success " + " / ".join(CONFIGURATIONS) + " | p99 " + " / ".join(CONFIGURATIONS)
        + " | stack ÷ DB floor | stack ÷ web ceiling | stack ÷ combined bound |",
        "|---|---:|---:|" + "---:|---:|" * len(peers) + "---|---|---:|---:|---:|",
    ]
    for row in ratio_rows(result.points):
        ops = row["ok_per_s"]
        stack = ops.get("stack", 0.0)
        points = {c: result.point(c, row["variant"], row["n"]) for c in CONFIGURATIONS}
        rates = " / ".join(format_rate(p.ok, p.requests) if p else "—" for p in points.values())
        p99s = " / ".join(_ms(p.latency_ms["p99"]) if p else "—" for p in points.values())
        peer_cells = []
        for peer in peers:
            value = ops.get(peer)
            peer_cells.append("— | —" if value is None else
                              f"{value:.0f} | {format_ratio(stack, value)}")

        shares = [f"{100 * stack / bound:.0f}%" if bound else "—"
                  for bound in (floor.per_s if floor else None,
                                ceiling.per_s if ceiling else None, combined)]
        lines.append(
            f"| {row['variant']} | {row['n']} | {stack:.0f} | " + " | ".join(peer_cells)
            + f" | {rates} | {p99s} | " + " | ".join(shares) + " |")
    return lines


def bounds_table(bounds: list[BoundResult]) -> list[str]:
    lines = ["| Bound | Tool | Concurrency | ok per second | p50 | p99 | Failed | Rows "
             "users / audit | Note |", "|---|---|---:|---:|---:|---:|---:|---|---|"]
    names = {"pgbench": "database floor: the user + audit transaction through PgBouncer "
                        "into PostgreSQL, no HTTP, no Python",
             "wrk django-404": "web ceiling: nginx → Gunicorn → Django middleware and URL "
                               "resolver (JSON 404), no view, no I/O",
             "wrk health": "health endpoint via nginx: includes a new, SCRAM-authenticated "
                           "database connection per request (not a bound)"}
    for b in bounds:
        rows = f"{b.users} / {b.audit}" if b.users is not None else "—"
        per_s = f"{b.per_s:.0f}" if b.ok else "not measured"
        lines.append(f"| {names.get(b.tool, b.tool)} | {b.tool} | {b.concurrency} | {per_s} "
                     f"| {_ms(b.latency_ms.get('p50'))} | {_ms(b.latency_ms.get('p99'))} "
                     f"| {b.failed} | {rows} | {b.note or ''} |")
    return lines


def server_cpu_ms_per_ok(point: PointResult) -> float | None:
    """CPU milliseconds the configuration's own processes spent per successful request."""
    own = sum(v for k, v in point.cpu_cores.items() if k not in ("client", "other", "machine"))
    return 1000.0 * own / point.ok_per_s if point.ok_per_s else None


def cpu_table(points: list[PointResult]) -> list[str]:
    lines = ["| Configuration | Variant | N | " + " | ".join(CPU_COLUMNS)
             + " | server CPU ms / ok request |",
             "|---|---|---:|" + "---:|" * (len(CPU_COLUMNS) + 1)]
    for p in points:
        cells = [f"{p.cpu_cores[c]:.2f}" if c in p.cpu_cores else "—" for c in CPU_COLUMNS]
        per_ok = server_cpu_ms_per_ok(p)
        cells.append("—" if per_ok is None else f"{per_ok:.1f}")
        lines.append(f"| {p.config} | {p.variant} | {p.n} | " + " | ".join(cells) + " |")
    return lines


def render_markdown(result: BenchResult, healthy_at: float) -> str:
    o, m = result.options, result.machine
    out = [f"# CivicPulse benchmark: stack `{result.stack}`", ""]
    out.append(f"{'Quick' if o['quick'] else 'Full'} run, {result.started_at} → "
               f"{result.finished_at}. N = {', '.join(map(str, o['ns']))} concurrent users; "
               f"{o['duration_s']:g} s per point (at most {o['max_requests']} requests, "
               f"{o['timeout_s']:g} s timeout per request); configurations interleaved at "
               "every N (order rotated from one N to the next).")
    out.append("")
    out.append(f"Machine: {m['cpus']} CPUs; load average {m['loadavg_start']:.2f} at start "
               f"({m['loadavg_end']:.2f} at end, the run's own load included); other jobs "
               f"used {m['other_cores_mean']:.2f} cores on average during the points"
               + (" — **taken under load from other jobs**: absolute numbers are low, "
                  "compare configurations with each other (the `other` CPU column shows "
                  "the foreign load)." if m["under_load"] else "."))
    out.append("")
    out.append(f"Load client: {m['client']}. N users = N request loops in flight at once; "
               "each create has a unique username; its own CPU is reported per point "
               "(one process can use at most 1 core).")
    out.append("")
    out.append("## Configurations")
    out.append("")
    out.append("| Configuration | Path | Acknowledged write survives a power loss? |")
    out.append("|---|---|---|")
    out.extend(f"| {name} | {text} | {result.durability.get(name, {}).get('why', '—')} |"
               for name, text in result.configurations.items())
    out.append("")
    out.append("Like with like: `sqlite-tuned` buys its speed by not syncing at commit; "
               "`sqlite-durable` is the same tuning with `synchronous=FULL`, the SQLite peer "
               "that keeps the stack's promise (a 201 means the row is on disk).")
    out.append("")
    out.append("Success = 201 for a create, 200 for a read. Latency percentiles and the "
               "average are over every completed request, failures included (a timeout "
               f"counts at its timeout). System Status: Healthy ≥ {100 * healthy_at:g}% "
               "(the stack's availability SLO), Degraded ≥ 50%, Failing > 0%, Failed 0%. "
               "Error kinds: `http_NNN` by status, `rate_limited_429` = nginx's rate limit, "
               "`timeout`, `connect_error`, `disconnected`.")
    if any(p.variant == REPORT_PATTERN for p in result.points):
        out += ["", "## The report's table, redone", "",
                "The chaos report's \"Performance Under Stress\" table as published, next to "
                "the report's pattern (one `transaction.atomic()` ORM block: existence check, "
                "then user and audit event) measured on the report's configuration "
                f"(`{REPORT_CONFIGURATION}`) and on the stack.", ""]
        out += report_table(result, healthy_at)
    for variant in o["variants"]:
        for config in CONFIGURATIONS:
            points = [p for p in result.points if p.config == config and p.variant == variant]
            if not points:
                continue
            out += ["", f"## Performance Under Stress — {config}, {VARIANT_TITLES[variant]}",
                    ""]
            out += performance_table(points, healthy_at)
    out += ["", "## Stack ÷ SQLite", "",
            "Ratios of successful requests per second at the same N (∞: the peer had none). "
            "The last three columns compare the stack with its own bounds below; the "
            "combined bound is 1 / (1/DB floor + 1/web ceiling), both halves of a create "
            "on the same cores.", ""]
    out += ratio_table(result)
    if result.bounds:
        out += ["", "## Bounds", ""]
        out += bounds_table(result.bounds)
        combined = combined_bound(result.bounds)
        if combined:
            out += ["", f"Combined bound (best floor and best ceiling): {combined:.0f} "
                    "creates/s."]
    out += ["", "## Where the CPU went", "",
            "Average cores used during each point (2 cores = the whole machine). `app` is "
            "every Gunicorn process of the configuration; `supervisord` relays the stack's "
            "logs (the peers write theirs straight to a file); `other` is everything else "
            "on the machine (other stacks, monitoring, other jobs); `idle` and `iowait` are "
            "the cores nobody used (iowait: idle while I/O was due).", ""]
    out += cpu_table(result.points)
    out += ["", "## Integrity", ""]
    for config in CONFIGURATIONS:
        pts = [p for p in result.points if p.config == config]
        if not pts:
            continue
        bad = [p for p in pts if not p.users_match_audit]
        acked = sum(p.acked_creates for p in pts)
        users = sum(p.users for p in pts)
        verdict = ("users == audit rows at every point" if not bad else
                   "**users != audit rows** at N = " + ", ".join(str(p.n) for p in bad))
        out.append(f"- {config}: {verdict}; {acked} creates acknowledged, {users} user rows "
                   "(rows ≥ acknowledged: a request that timed out on the client may still "
                   "have committed).")
    if result.notes:
        out += ["", "## Notes", ""] + [f"- {n}" for n in result.notes]
    out += ["", "## Plots", "", "![success rate](success_rate.svg)", "",
            "![p99 latency](p99_latency.svg)", "", "![throughput](throughput.svg)", ""]
    return "\n".join(out)


def charts(result: BenchResult) -> dict[str, str]:
    ns = sorted({p.n for p in result.points})

    def series(metric: Any) -> list[Series]:
        found = []
        for variant in result.options["variants"]:
            for config in CONFIGURATIONS:
                pts = sorted((p for p in result.points
                              if p.config == config and p.variant == variant), key=lambda p: p.n)
                if pts:
                    found.append(Series(f"{config} ({variant})",
                                        [(p.n, metric(p)) for p in pts], COLORS[config],
                                        dashed=variant != WRITE))
        return found

    hlines = []
    floor = best_bound(result.bounds, "pgbench")
    ceiling = best_bound(result.bounds, "wrk django-404")
    if floor:
        hlines.append(HLine(f"DB floor {floor.per_s:.0f}/s", floor.per_s, "#8c510a"))
    if ceiling:
        hlines.append(HLine(f"web ceiling {ceiling.per_s:.0f}/s", ceiling.per_s, "#762a83"))
    combined = combined_bound(result.bounds)
    if combined:
        hlines.append(HLine(f"combined bound {combined:.0f}/s", combined, "#35978f"))
    return {
        "success_rate.svg": line_chart(
            "Success rate vs concurrent users", "concurrent users (N)", "success rate (%)",
            series(lambda p: 100 * p.success_rate), ns, y_max=100),
        "p99_latency.svg": line_chart(
            "p99 latency vs concurrent users", "concurrent users (N)", "p99 latency (ms)",
            series(lambda p: p.latency_ms["p99"]), ns, log_y=True),
        "throughput.svg": line_chart(
            "Successful requests per second vs concurrent users", "concurrent users (N)",
            "ok requests / s", series(lambda p: p.ok_per_s), ns, hlines=hlines),
    }


def write_report(result: BenchResult, healthy_at: float) -> dict[str, Path]:
    """Write report.md, results.json and the SVGs into result.out_dir; return the paths."""
    out = result.out_dir
    out.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": out / "report.md", "json": out / "results.json"}
    paths["markdown"].write_text(render_markdown(result, healthy_at))
    paths["json"].write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    for name, svg in charts(result).items():
        (out / name).write_text(svg)
        paths[name] = out / name
    return paths
