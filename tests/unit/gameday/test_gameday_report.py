"""The report: HTML (self-contained, inline SVG), Markdown tables, JSON journal, JUnit."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

from gameday import timeline as tl
from gameday.reconcile import WriteRecord, reconcile
from gameday.report import write_report
from gameday.results import FALSIFIED, HELD, SKIPPED, GamedayRun, ScenarioResult
from gameday.verdict import Check


def scenario_result(id_, status):
    t = tl.Timeline()
    t.add(0.0, tl.LOAD_STARTED)
    t.add(10.0, tl.FAULT_INJECTED, fault="service_stop on redis@cache")
    t.add(11.0, tl.SLI_BREACH)
    t.add(14.0, tl.ALERT_FIRING, alert="RedisDown", source="webhook")
    t.add(40.0, tl.FAULT_REMOVED)
    t.add(43.0, tl.STEADY_STATE_REGAINED)
    samples = [tl.RequestSample(s / 2, 0.02, "create_user", 201, "ok", users=20)
               for s in range(120)]
    samples += [tl.RequestSample(25.0, 5.0, "create_user", None, "indeterminate", "timeout",
                                 users=20)]
    bounds = tl.phase_bounds(t, 60.0)
    r = ScenarioResult(id=id_, title=f"{id_} title", hypothesis="it holds <b>", fault="x",
                       target="redis@cache", source="f.yaml", status=status, timeline=t,
                       phase_bounds=bounds,
                       phases={k: tl.phase_stats(samples, a, b) for k, (a, b) in bounds.items()},
                       series=tl.per_second_series(samples, 60.0),
                       times=tl.recovery_times(t, ["RedisDown"]),
                       reconciliation=reconcile([WriteRecord("a", "a", 1, status=201,
                                                             outcome="acknowledged")], [], []),
                       checks=[Check("no lost acknowledged writes", status == HELD, "≤ 0",
                                     "1 of 1")],
                       score={"score": 80.0, "D": 1, "R": 1, "A": 0.5, "I": 1.0},
                       duration_s=60.0)
    r.healthy_samples = samples
    return r


def test_report_files(tmp_path):
    run = GamedayRun(run_id="20250101T000000abcd", stack="lab", started_at="s",
                     dry_run=False, finished_at="f")
    run.results = [scenario_result("redis-down", HELD),
                   scenario_result("pgbouncer-crash", FALSIFIED),
                   ScenarioResult(id="disk", title="disk", hypothesis="h", fault="disk_full",
                                  target="postgresql@db", source="d.yaml", status=SKIPPED,
                                  reason="not on a dedicated volume")]
    run.concurrency = tl.by_concurrency(run.results[0].healthy_samples)
    run.score = 80.0
    directory = write_report(run, tmp_path)
    assert sorted(p.name for p in directory.iterdir()) == [
        "journal.json", "junit.xml", "report.html", "summary.md"]

    html = (directory / "report.html").read_text()
    assert "<svg" in html and "http://" not in html.replace("http://www.w3.org/2000/svg", "")
    assert "it holds &lt;b&gt;" in html  # escaped

    md = (directory / "summary.md").read_text()
    assert "| failure type | detected (TTD) | notified | recovered (TTR) |" in md
    assert "| concurrent users | requests | success rate | p50 | p99 | ok/s |" in md
    assert "| redis-down title | 4.0s | 4.0s | 33.0s |" in md

    journal = json.loads((directory / "journal.json").read_text())
    assert journal["exit_code"] == 1
    assert journal["scenarios"][0]["timeline"][1]["kind"] == "fault_injected"

    suite = ET.parse(directory / "junit.xml").getroot()
    assert suite.attrib["tests"] == "3" and suite.attrib["failures"] == "1"
    assert suite.attrib["skipped"] == "1"
    cases = {c.attrib["name"]: c for c in suite.iter("testcase")}
    assert cases["pgbouncer-crash"].find("failure") is not None
    assert cases["disk"].find("skipped") is not None


def test_exit_codes():
    run = GamedayRun("r", "lab", "s", dry_run=False)
    run.results = [scenario_result("a", HELD)]
    assert run.exit_code == 0
    run.results.append(scenario_result("b", FALSIFIED))
    assert run.exit_code == 1
    run.interrupted = True
    assert run.exit_code == 130
