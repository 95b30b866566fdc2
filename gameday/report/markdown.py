"""The Markdown summary: verdicts, the two tables, lost writes, then per scenario."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gameday.report.tables import (
    concurrency_table_rows,
    failure_rows,
    phase_rows,
    verdict_rows,
    write_rows,
)
from gameday.results import GamedayRun
from gameday.score import FORMULA


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    if not rows:
        return "_none_\n"
    cols = list(columns or rows[0].keys())
    out = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in rows:
        cells = [str(row.get(c, "")).replace("|", "\\|").replace("\n", " ") for c in cols]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def render_markdown(run: GamedayRun) -> str:
    lines = [f"# GameDay {run.run_id} — stack `{run.stack}`", ""]
    score = "–" if run.score is None else f"{run.score:.0f}/100"
    lines += [f"- started {run.started_at}, finished {run.finished_at}"
              + (" (**dry run**)" if run.dry_run else "")
              + (" — **interrupted**" if run.interrupted else ""),
              f"- resilience score: **{score}** ({FORMULA}; see the HTML report for terms)",
              f"- exit code: {run.exit_code}", ""]
    for note in run.notes:
        lines.append(f"> {note}")
    lines += ["", "## Verdicts", "", table(verdict_rows(run)),
              "## Failure types: detection and recovery", "",
              "TTD: fault injected → first expected alert firing (Prometheus or webhook). "
              "Notified: → webhook. TTR: fault injected → steady state regained.", "",
              table(failure_rows(run)),
              "## Concurrency: users, success rate, latency", "",
              "Fault-free traffic of every scenario (before/after phases, and the surge).", ""]
    lines += [table(concurrency_table_rows(run)), "## Writes reconciled against PostgreSQL", "",
              table(write_rows(run))]
    for r in run.results:
        lines += [f"## {r.id}: {r.title}", "", f"**{r.status.upper()}**"
                  + (f" — {r.reason}" if r.reason else ""), "",
                  f"_Hypothesis:_ {r.hypothesis}", ""]
        if r.plan:
            lines += ["Fault plan:", *[f"- {p}" for p in r.plan], ""]
        if r.notes:
            lines += ["Notes:", *[f"- {n}" for n in r.notes], ""]
        if r.checks:
            lines += [table([{"check": c.name, "result": "pass" if c.passed else (
                "info" if c.informational else "FAIL"), "expected": c.expected,
                "measured": c.measured} for c in r.checks])]
        if r.phases:
            lines += [table(phase_rows(r))]
        events = [e for e in r.timeline.sorted() if e.kind != "note"]
        if events:
            lines += ["Timeline:", ""]
            for e in events[:60]:
                detail = ", ".join(f"{k}={v}" for k, v in e.detail.items() if k != "reasons")
                lines.append(f"- `{e.t:7.2f}s` {e.kind}" + (f" ({detail})" if detail else ""))
            lines.append("")
        if r.runbook is not None:
            lines.append(f"Runbook `{r.runbook.path}`: "
                         + ("ok" if r.runbook.ok else (r.runbook.problem or "failed")))
            for step in r.runbook.results:
                lines.append(f"- {step.step} (line {step.line}): exit {step.exit_code}, "
                             f"{step.duration_s:.1f}s" + (" TIMEOUT" if step.timed_out else ""))
            lines.append("")
    return "\n".join(lines) + "\n"
