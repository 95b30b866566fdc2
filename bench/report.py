"""Markdown, JSON and SVG output of a run, in the chaos report's table format."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.bounds import BoundResult
from bench.results import CONFIGURATIONS, BenchResult, PointResult, ratio_rows
from bench.stats import format_rate, format_ratio, system_status
from bench.svg import HLine, Series, line_chart

COLORS = {"stack": "#1b7837", "sqlite-default": "#d73027", "sqlite-tuned": "#4575b4"}
VARIANT_TITLES = {"write": "write path (POST /api/users/: user + audit in one transaction)",
                  "read-mix": "read mix (1 create : 4 GET /api/users/<id>/)"}
CPU_COLUMNS = ("client", "nginx", "app", "supervisord", "pgbouncer", "postgresql", "redis",
               "other", "machine")


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
        if kind == "http_503" and point.lock_errors:
            text += f" (database is locked ×{point.lock_errors})"
        parts.append(text)
    return ", ".join(parts)


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


def best_bound(bounds: list[BoundResult], tool: str) -> BoundResult | None:
    ok = [b for b in bounds if b.tool == tool and b.ok]
    return max(ok, key=lambda b: b.per_s) if ok else None


def ratio_table(result: BenchResult) -> list[str]:
    floor = best_bound(result.bounds, "pgbench")
    ceiling = best_bound(result.bounds, "wrk django-404")
    lines = [
        "| Variant | N | stack ok/s | sqlite-default ok/s | stack ÷ default "
        "| sqlite-tuned ok/s | stack ÷ tuned | success stack / default / tuned "
        "| p99 stack / default / tuned | stack ÷ DB floor | stack ÷ web ceiling |",
        "|---|---:|---:|---:|---:|---:|---:|---|---|---:|---:|",
    ]
    for row in ratio_rows(result.points):
        ops = row["ok_per_s"]
        stack = ops.get("stack", 0.0)
        default, tuned = ops.get("sqlite-default"), ops.get("sqlite-tuned")
        points = {c: result.point(c, row["variant"], row["n"]) for c in CONFIGURATIONS}
        rates = " / ".join(format_rate(p.ok, p.requests) if p else "—" for p in points.values())
        p99s = " / ".join(_ms(p.latency_ms["p99"]) if p else "—" for p in points.values())
        of_floor = f"{100 * stack / floor.per_s:.0f}%" if floor and floor.per_s else "—"
        of_ceiling = f"{100 * stack / ceiling.per_s:.0f}%" if ceiling and ceiling.per_s else "—"
        lines.append(
            f"| {row['variant']} | {row['n']} | {stack:.0f} "
            f"| {'—' if default is None else f'{default:.0f}'} "
            f"| {format_ratio(stack, default) if default is not None else '—'} "
            f"| {'—' if tuned is None else f'{tuned:.0f}'} "
            f"| {format_ratio(stack, tuned) if tuned is not None else '—'} "
            f"| {rates} | {p99s} | {of_floor} | {of_ceiling} |")
    return lines


def bounds_table(bounds: list[BoundResult]) -> list[str]:
    lines = ["| Bound | Tool | Concurrency | ok per second | p50 | p99 | Failed | Rows "
             "users / audit | Note |", "|---|---|---:|---:|---:|---:|---:|---|---|"]
    names = {"pgbench": "database floor (user + audit transaction via PgBouncer)",
             "wrk django-404": "web ceiling (nginx → Gunicorn → Django, no view)",
             "wrk health": "health endpoint via nginx"}
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
    out.append("| Configuration | Path |")
    out.append("|---|---|")
    out.extend(f"| {name} | {text} |" for name, text in result.configurations.items())
    out.append("")
    out.append("Success = 201 for a create, 200 for a read. Latency percentiles and the "
               "average are over every completed request, failures included (a timeout "
               f"counts at its timeout). System Status: Healthy ≥ {100 * healthy_at:g}% "
               "(the stack's availability SLO), Degraded ≥ 50%, Failing > 0%, Failed 0%. "
               "Error kinds: `http_NNN` by status, `rate_limited_429` = nginx's rate limit, "
               "`timeout`, `connect_error`, `disconnected`.")
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
            "The last two columns compare the stack with its own bounds below.", ""]
    out += ratio_table(result)
    if result.bounds:
        out += ["", "## Bounds", ""]
        out += bounds_table(result.bounds)
    out += ["", "## Where the CPU went", "",
            "Average cores used during each point (2 cores = the whole machine). `app` is "
            "every Gunicorn process of the configuration; `supervisord` relays the stack's "
            "logs (the peers write theirs straight to a file); `other` is everything else "
            "on the machine (other stacks, monitoring, other jobs).", ""]
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
                                        dashed=variant != "write"))
        return found

    hlines = []
    floor = best_bound(result.bounds, "pgbench")
    ceiling = best_bound(result.bounds, "wrk django-404")
    if floor:
        hlines.append(HLine(f"DB floor {floor.per_s:.0f}/s", floor.per_s, "#8c510a"))
    if ceiling:
        hlines.append(HLine(f"web ceiling {ceiling.per_s:.0f}/s", ceiling.per_s, "#762a83"))
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
