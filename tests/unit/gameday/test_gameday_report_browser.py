"""The HTML report as people see it: rendered by a real headless Chromium."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from test_gameday_report import scenario_result

from gameday import timeline as tl
from gameday.report import write_report
from gameday.results import FALSIFIED, HELD, GamedayRun

CHROMIUM = shutil.which("chromium")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed "
                                                "(./bootstrap installs it)"),
]
# Flags for a sandbox with no network and no display, as root.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def report_html(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report")
    run = GamedayRun(run_id="20260101T000000test", stack="lab", started_at="s",
                     dry_run=False, finished_at="f")
    run.results = [scenario_result("redis-down", HELD),
                   scenario_result("pgbouncer-crash", FALSIFIED)]
    run.concurrency = tl.by_concurrency(run.results[0].healthy_samples)
    run.score = 80.0
    return write_report(run, out) / "report.html"


def test_plots_and_tables_render_in_chromium(report_html, tmp_path):
    # --dump-dom prints the DOM after the page loaded: what the browser built, not
    # just the file we wrote.
    dom = chromium(["--dump-dom", report_html.as_uri()], tmp_path / "p1")
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    assert len(re.findall(r"<svg\b", html)) >= 2, "one timeline plot per scenario"
    assert re.search(r"<(polyline|path|rect)\b", html), "plots have drawn elements"
    assert html.count("<table") >= 2, "the two summary tables"
    for scenario in ("redis-down", "pgbouncer-crash"):
        assert scenario in html

    shot = tmp_path / "report.png"
    result = chromium([f"--screenshot={shot}", "--window-size=1280,2000",
                       "--hide-scrollbars", report_html.as_uri()], tmp_path / "p2")
    assert result.returncode == 0, result.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    keep = Path("reports/screenshots")
    keep.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, keep / "gameday-report.png")
