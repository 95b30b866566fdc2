"""What the runbook check found (`Report`: coverage per alert, problems) and how it is
shown to a human: the coverage matrix, then every problem."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from gameday.runbook_markdown import STEPS
from gameday.runbook_sources import Problem


@dataclass
class Coverage:
    alert: str
    severity: str
    runbook: str | None
    steps: dict[str, int] = field(default_factory=dict)
    scenarios: list[str] = field(default_factory=list)  # "id" or "id?" (optional)
    not_exercised: str | None = None
    verdicts: list[str] = field(default_factory=list)


@dataclass
class Report:
    repo_root: Path
    alerts: list[str]
    runbooks: list[str]
    coverage: list[Coverage]
    problems: list[Problem]
    journal: str | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "alerts": self.alerts, "runbooks": self.runbooks,
                "journal": self.journal, "problems": [str(p) for p in self.problems],
                "coverage": [c.__dict__ for c in self.coverage]}


def coverage_table(report: Report) -> Table:
    source = report.journal or "no GameDay report yet"
    table = Table(title=f"runbook coverage ({len(report.alerts)} alerts; verdicts: {source})",
                  title_justify="left")
    for column in ("alert", "severity", "runbook", "steps d/m/v", "exercised by",
                   "latest GameDay"):
        table.add_column(column, overflow="fold")
    for cov in report.coverage:
        steps = "/".join(str(cov.steps.get(s, 0)) for s in STEPS) if cov.runbook else ""
        reason = cov.not_exercised or ""
        if len(reason) > 60:
            reason = reason[:57].rsplit(" ", 1)[0] + " …"
        exercised = ", ".join(cov.scenarios) or (
            f"[dim]not exercised: {escape(reason)}[/]" if cov.not_exercised
            else "[red]nothing[/]")
        table.add_row(cov.alert, cov.severity,
                      "[green]yes[/]" if cov.runbook else "[red]missing[/]", steps, exercised,
                      "\n".join(cov.verdicts) or "-")
    return table


def print_report(report: Report, console: Console | None = None) -> None:
    """The coverage matrix, then every problem, then a one-line verdict."""
    console = console or Console()
    console.print(coverage_table(report))
    for problem in report.problems:
        console.print(f"[red]✗[/] {problem}", highlight=False, markup=True)
    if report.ok:
        console.print(f"[green]runbooks OK[/]: {len(report.runbooks)} runbooks for "
                      f"{len(report.alerts)} alerts")
    else:
        console.print(f"[red]{len(report.problems)} problem(s)[/] in the runbooks")
