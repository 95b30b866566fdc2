"""JUnit XML for CI: one test case per scenario.

held → pass; falsified → <failure> (the failed checks); refused and error → <error>;
skipped and planned (dry run) → <skipped>.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from gameday.results import ERROR, FALSIFIED, PLANNED, REFUSED, SKIPPED, GamedayRun


def render_junit(run: GamedayRun) -> str:
    suite = ET.Element("testsuite", {
        "name": f"gameday.{run.stack}",
        "tests": str(len(run.results)),
        "failures": str(sum(r.status == FALSIFIED for r in run.results)),
        "errors": str(sum(r.status in (ERROR, REFUSED) for r in run.results)),
        "skipped": str(sum(r.status in (SKIPPED, PLANNED) for r in run.results)),
        "time": f"{sum(r.duration_s for r in run.results):.2f}",
        "timestamp": run.started_at,
    })
    for r in run.results:
        case = ET.SubElement(suite, "testcase", {"classname": f"gameday.{run.stack}",
                                                 "name": r.id, "time": f"{r.duration_s:.2f}"})
        failed = "\n".join(f"{c.name}: expected {c.expected}, measured {c.measured}"
                           for c in r.checks if not c.passed and not c.informational)
        if r.status == FALSIFIED:
            ET.SubElement(case, "failure", {"message": r.reason[:500],
                                            "type": "HypothesisFalsified"}).text = failed
        elif r.status in (ERROR, REFUSED):
            ET.SubElement(case, "error", {"message": f"{r.status}: {r.reason}"[:500],
                                          "type": r.status})
        elif r.status in (SKIPPED, PLANNED):
            ET.SubElement(case, "skipped", {"message": r.reason or r.status})
        out = "\n".join(f"{e.t:8.2f}s {e.kind} {e.detail}" for e in r.timeline.sorted())
        ET.SubElement(case, "system-out").text = out
    ET.indent(suite)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suite, encoding="unicode")
