"""The self-contained HTML report: one file, inline CSS and SVG, no external assets."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import Any

from gameday.report.svg import concurrency_chart, timeline_chart
from gameday.report.tables import (
    concurrency_rows,
    concurrency_table_rows,
    failure_rows,
    phase_rows,
    verdict_rows,
    write_rows,
)
from gameday.results import GamedayRun, ScenarioResult
from gameday.score import FORMULA

CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1000px;color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0 1em;font-size:.9em}
th,td{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f4f4f4}.held{color:#176b17;font-weight:bold}
.falsified,.error,.refused{color:#b00020;font-weight:bold}.skipped,.planned{color:#8a6d00}
.muted{color:#777}pre{background:#f6f6f6;padding:.5em;overflow-x:auto;font-size:.8em}
.fail{color:#b00020}.pass{color:#176b17}.info{color:#8a6d00}details{margin:.5em 0}
"""


def _table(rows: Sequence[dict[str, Any]], status_col: str | None = None) -> str:
    if not rows:
        return '<p class="muted">none</p>'
    cols = list(rows[0].keys())
    head = "".join(f"<th>{escape(c)}</th>" for c in cols)
    body = []
    for row in rows:
        cells = []
        for c in cols:
            value = escape(str(row.get(c, "")))
            cls = f' class="{escape(str(row[c]).lower())}"' if c == status_col else ""
            cells.append(f"<td{cls}>{value}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _scenario(r: ScenarioResult) -> str:
    parts = [f'<h2 id="{escape(r.id)}">{escape(r.id)}: {escape(r.title)}</h2>',
             f'<p><span class="{r.status}">{r.status.upper()}</span> '
             f'{escape(r.reason)}</p>',
             f"<p><em>Hypothesis:</em> {escape(r.hypothesis)}</p>"]
    if r.score:
        s = r.score
        parts.append(f"<p>score <b>{s['score']:.0f}</b> (D={s['D']}, R={s['R']}, "
                     f"A={s['A']}, I={s['I']:g})</p>")
    if r.plan:
        parts.append("<p>Fault plan:</p><ul>" + "".join(f"<li><code>{escape(p)}</code></li>"
                                                        for p in r.plan) + "</ul>")
    if r.notes:
        parts.append("<ul>" + "".join(f"<li>{escape(n)}</li>" for n in r.notes) + "</ul>")
    if r.series:
        bounds = {k: [a, b] for k, (a, b) in r.phase_bounds.items()}
        parts.append(timeline_chart(r.series, [e.to_dict() for e in r.timeline.sorted()],
                                    bounds))
    if r.checks:
        rows = []
        for c in r.checks:
            verdict = "pass" if c.passed else ("info" if c.informational else "fail")
            rows.append(f'<tr><td>{escape(c.name)}</td><td class="{verdict}">'
                        f"{verdict if verdict != 'fail' else 'FAIL'}</td>"
                        f"<td>{escape(c.expected)}</td><td>{escape(c.measured)}</td></tr>")
        parts.append("<table><tr><th>check</th><th>result</th><th>expected</th>"
                     f"<th>measured</th></tr>{''.join(rows)}</table>")
    if r.phases:
        parts.append(_table(phase_rows(r)))
    events = r.timeline.sorted()
    if events:
        items = "".join(
            f"<tr><td>{e.t:.2f}s</td><td>{escape(e.kind)}</td><td>"
            f"{escape(', '.join(f'{k}={v}' for k, v in e.detail.items()))}</td></tr>"
            for e in events[:200])
        parts.append(f"<details><summary>timeline ({len(events)} events)</summary><table>"
                     f"<tr><th>t</th><th>event</th><th>detail</th></tr>{items}</table>"
                     "</details>")
    if r.runbook is not None:
        rb = r.runbook
        parts.append(f"<p>Runbook <code>{escape(rb.path)}</code>: "
                     f"{'ok' if rb.ok else escape(rb.problem or 'failed')}</p>")
        for step in rb.results:
            parts.append(
                f"<details><summary>{escape(step.step)} (line {step.line}): exit "
                f"{step.exit_code}, {step.duration_s:.1f}s"
                f"{' TIMEOUT' if step.timed_out else ''}</summary>"
                f"<pre>{escape(step.stdout)}</pre><pre>{escape(step.stderr)}</pre></details>")
    rec = r.reconciliation
    if rec is not None and (rec.lost_acknowledged or rec.audit_mismatches):
        examples = rec.lost_acknowledged[:10]
        parts.append("<p class='fail'>Lost acknowledged writes (examples):</p><pre>"
                     + escape("\n".join(map(str, examples))) + "</pre>")
    return "\n".join(parts)


def render_html(run: GamedayRun) -> str:
    score = "–" if run.score is None else f"{run.score:.0f}/100"
    body = [
        f"<h1>GameDay {escape(run.run_id)} — stack <code>{escape(run.stack)}</code></h1>",
        f"<p>started {escape(run.started_at)}, finished {escape(run.finished_at)}"
        f"{' — <b>dry run</b>' if run.dry_run else ''}"
        f"{' — <b>interrupted</b>' if run.interrupted else ''}. Exit code {run.exit_code}.</p>",
        f"<p>Resilience score <b>{score}</b>: <code>{escape(FORMULA)}</code>, where D is "
        "detection (1 within the alert deadline, decaying linearly to 0 at twice it, 0 if "
        "never), R recovery (same, against the recovery deadline; 1 if the steady state "
        "never broke), A the users' success rate while the fault was active, and I "
        "integrity (0 if any acknowledged write was lost or the audit trail disagrees). "
        "The run's score is the mean over the scenarios that ran.</p>",
        *[f"<p class='muted'>{escape(n)}</p>" for n in run.notes],
        "<h2>Verdicts</h2>", _table(verdict_rows(run), status_col="status"),
        "<h2>Failure types: detection and recovery</h2>",
        "<p class='muted'>TTD: fault injected → first expected alert firing (Prometheus "
        "polling or Alertmanager webhook). Notified: → webhook. TTR: fault injected → "
        "steady state regained (0 if it never broke).</p>",
        _table(failure_rows(run)),
        "<h2>Concurrency: users, success rate, latency</h2>",
        concurrency_chart(concurrency_rows(run)), _table(concurrency_table_rows(run)),
        "<h2>Writes reconciled against PostgreSQL</h2>", _table(write_rows(run)),
        *[_scenario(r) for r in run.results],
    ]
    return ("<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>GameDay {escape(run.run_id)}</title><style>{CSS}</style></head><body>"
            + "\n".join(body) + "</body></html>\n")
