"""The GameDay report: `reports/<timestamp>/` with report.html (self-contained, inline
SVG plots), summary.md, journal.json (every measurement) and junit.xml."""

from __future__ import annotations

import json
from pathlib import Path

from gameday.report.html import render_html
from gameday.report.junit import render_junit
from gameday.report.markdown import render_markdown
from gameday.results import GamedayRun


def write_report(run: GamedayRun, reports_dir: Path) -> Path:
    directory = reports_dir / run.run_id
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "journal.json").write_text(json.dumps(run.to_dict(), indent=2, default=str),
                                            encoding="utf-8")
    (directory / "summary.md").write_text(render_markdown(run), encoding="utf-8")
    (directory / "report.html").write_text(render_html(run), encoding="utf-8")
    (directory / "junit.xml").write_text(render_junit(run), encoding="utf-8")
    return directory
