"""The runbook checker: good and broken runbook sets in throwaway repository trees,
and the real runbooks/ of this checkout."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from rich.console import Console

from gameday import runbook_check as rc
from gameday.runbook_markdown import slug
from infra.topology import REPO_ROOT

RULES = """\
groups:
  - name: demo
    rules:
      - alert: DemoDown
        expr: up{job="demo"} == 0
        labels: {severity: critical, service: demo}
        annotations: {summary: down, runbook_url: runbooks/DemoDown.md}
      - alert: DemoSlow
        expr: demo_latency > 1
        labels: {severity: warning, service: demo}
        annotations: {summary: slow, runbook_url: runbooks/DemoSlow.md}
"""

SCENARIO = """\
id: demo-down
title: Demo down
alerts:
  - {name: DemoDown, deadline_s: 10}
runbook:
  trigger: on_alert
"""

TASKS = '''\
from invoke import task


@task
def status(c, stack="lab", json_=False):
    pass


@task(help={"stack": "x"})
def deploy(c, stack="lab", target=""):
    pass
'''

GOOD_DOWN = """\
# DemoDown

## Meaning
Demo is down: `up{job="demo"} == 0`. See [DemoSlow](DemoSlow.md#impact).

## Impact
Everything fails.

## Diagnosis
```sh step=diagnose
python -m infra.ops status --stack "$CP_STACK" --service redis || true
invoke status --stack "$CP_STACK" --json
```

## Mitigation
```sh step=mitigate timeout=60
python -m infra.ops restart --stack "$CP_STACK" --service app --unhealthy --wait 30
python -m infra.ops logs --stack "$CP_STACK" --service app --host "${CP_ALERT_HOST:-}"
```

For humans (never run):

```sh
python -m infra.ops drain --stack lab --host app1
```

```sh step=verify attempts=5 interval=1
python -m infra.ops alerts --stack "$CP_STACK" --name DemoDown --fail-if-firing
```

## Escalation
Call someone.
"""

GOOD_SLOW = """\
# DemoSlow
<!-- not-exercised: needs hours of slowness -->

## Meaning
Slow.

## Impact
Slow users.

## Diagnosis
```sh step=diagnose
python -m infra.ops promql --stack "$CP_STACK" 'demo_latency > 1'
```

## Mitigation
Wait.
"""


def make_repo(root: Path, runbooks: dict[str, str] | None = None,
              scenarios: dict[str, str] | None = None, rules: str = RULES) -> Path:
    (root / "monitoring" / "prometheus" / "rules").mkdir(parents=True)
    (root / "monitoring" / "prometheus" / "rules" / "demo.yml.j2").write_text(rules)
    (root / "gameday" / "scenarios").mkdir(parents=True)
    for name, text in (scenarios if scenarios is not None else {"demo": SCENARIO}).items():
        (root / "gameday" / "scenarios" / f"{name}.yaml").write_text(text)
    (root / "tasks.py").write_text(TASKS)
    (root / "runbooks").mkdir()
    for name, text in (runbooks if runbooks is not None else
                       {"DemoDown": GOOD_DOWN, "DemoSlow": GOOD_SLOW}).items():
        (root / "runbooks" / f"{name}.md").write_text(textwrap.dedent(text))
    return root


def messages(report: rc.Report) -> list[str]:
    return [str(p) for p in report.problems]


def test_a_good_set_passes_with_its_coverage(tmp_path):
    report = rc.check_runbooks(make_repo(tmp_path))
    assert messages(report) == []
    assert report.ok
    cov = {c.alert: c for c in report.coverage}
    assert cov["DemoDown"].scenarios == ["demo-down"]
    assert cov["DemoDown"].steps == {"diagnose": 1, "mitigate": 1, "verify": 1}
    assert cov["DemoSlow"].not_exercised == "needs hours of slowness"
    assert report.journal is None


def test_missing_runbook_is_reported(tmp_path):
    report = rc.check_runbooks(make_repo(tmp_path, runbooks={"DemoDown": GOOD_DOWN}))
    assert "runbooks/DemoSlow.md: missing: alert DemoSlow has no runbook" in messages(report)


def test_runbook_for_an_unknown_alert_is_reported(tmp_path):
    runbooks = {"DemoDown": GOOD_DOWN, "DemoSlow": GOOD_SLOW,
                "Ghost": GOOD_SLOW.replace("DemoSlow", "Ghost")}
    report = rc.check_runbooks(make_repo(tmp_path, runbooks=runbooks))
    assert any(m.startswith("runbooks/Ghost.md: no alert named 'Ghost'")
               for m in messages(report))


def test_missing_sections_and_title(tmp_path):
    broken = GOOD_DOWN.replace("## Impact", "## Consequences").replace(
        "## Escalation", "## Notes").replace("# DemoDown", "# Demo down", 1)
    report = rc.check_runbooks(make_repo(tmp_path, runbooks={"DemoDown": broken,
                                                             "DemoSlow": GOOD_SLOW}))
    found = messages(report)
    assert "runbooks/DemoDown.md: missing section '## Impact'" in found
    assert "runbooks/DemoDown.md: missing section '## Escalation' (critical alert)" in found
    assert "runbooks/DemoDown.md:1: the first heading must be '# DemoDown'" in found
    # Escalation is only required for critical alerts.
    assert not any("DemoSlow.md: missing section" in m for m in found)


@pytest.mark.parametrize(("step", "expected"), [
    ('python -m infra.ops frobnicate --stack "$CP_STACK"', "invalid choice: 'frobnicate'"),
    ('python -m infra.ops restart --stack "$CP_STACK" --service app --bogus',
     "unrecognized arguments: --bogus"),
    ('python -m infra.ops status --service app', 'pass --stack "$CP_STACK"'),
    ('python -m infra.ops status --stack lab', 'use --stack "$CP_STACK"'),
    ('invoke frobnicate --stack "$CP_STACK"', "invoke frobnicate: no such task in tasks.py"),
    ('invoke status --stack "$CP_STACK" --verbose', "invoke status: no flag --verbose"),
    ('invoke deploy --stack lab', 'use --stack "$CP_STACK"'),
    ("supervisorctl status", "command 'supervisorctl'"),
    ('python manage.py shell', "steps run Python only as `python -m infra.ops`"),
    ("curl -s http://127.0.10.10:8080/", "hard-coded address"),
    ("tail /var/lib/civicpulse/lab/hosts/db/log/postgresql.log", "hard-coded path"),
    ('python -m infra.ops logs --stack "$CP_STACK" --service app --host "$CP_ALERT_HOST"',
     "write ${CP_ALERT_HOST:-}"),
    ('python -m infra.ops status --stack "$CP_STACK" --host "$CP_DB_HOST"',
     "$CP_DB_HOST is not a runbook placeholder"),
    ("if true; then echo x; fi", "shell control flow (if)"),
])
def test_steps_calling_what_does_not_exist_are_reported(tmp_path, step, expected):
    runbook = GOOD_DOWN.replace(
        'invoke status --stack "$CP_STACK" --json', step)
    report = rc.check_runbooks(make_repo(tmp_path, runbooks={"DemoDown": runbook,
                                                             "DemoSlow": GOOD_SLOW}))
    assert any(expected in m and "DemoDown.md:" in m for m in messages(report)), \
        messages(report)


def test_examples_for_humans_may_name_hosts_but_must_exist(tmp_path):
    runbook = GOOD_DOWN.replace("drain --stack lab --host app1",
                                "drian --stack lab --host app1")
    report = rc.check_runbooks(make_repo(tmp_path, runbooks={"DemoDown": runbook,
                                                             "DemoSlow": GOOD_SLOW}))
    assert any("example: python -m infra.ops: argument COMMAND: invalid choice: 'drian'" in m
               for m in messages(report))


def test_block_attributes_are_checked(tmp_path):
    runbook = GOOD_DOWN.replace("```sh step=mitigate timeout=60",
                                "```sh stpe=mitigate timeout=0 expect=(unclosed").replace(
        "attempts=5", "attempts=many")
    report = rc.check_runbooks(make_repo(tmp_path, runbooks={"DemoDown": runbook,
                                                             "DemoSlow": GOOD_SLOW}))
    found = " | ".join(messages(report))
    assert "unknown block attribute 'stpe'" in found
    assert "has attributes but no step=" in found
    assert "timeout=0 must be a number of seconds" in found
    assert "expect= is not a valid regex" in found
    assert "attempts=many must be a whole number" in found
    # The runner rejects attempts=many, so the scenario that runs this runbook gets
    # none of its steps.
    assert "the GameDay runner cannot parse it" in found
    assert "scenario demo-down runs its diagnose/mitigate/verify step(s)" in found


def test_a_runbook_the_runner_cannot_parse_is_reported(tmp_path):
    runbook = GOOD_DOWN + "\n```sh step=diagnose\necho never closed\n"
    report = rc.check_runbooks(make_repo(tmp_path, runbooks={"DemoDown": runbook,
                                                             "DemoSlow": GOOD_SLOW}))
    assert any("the GameDay runner cannot parse it" in m and "never closed" in m
               for m in messages(report))


def test_broken_links_and_anchors(tmp_path):
    runbook = GOOD_DOWN.replace("[DemoSlow](DemoSlow.md#impact)",
                                "[gone](Nowhere.md), [bad anchor](DemoSlow.md#nope), "
                                "[web](https://example.org/x), [self](#mitigation)")
    report = rc.check_runbooks(make_repo(tmp_path, runbooks={"DemoDown": runbook,
                                                             "DemoSlow": GOOD_SLOW}))
    found = messages(report)
    assert "runbooks/DemoDown.md:4: link target 'Nowhere.md' does not exist" in found
    assert ("runbooks/DemoDown.md:4: link 'DemoSlow.md#nope': no heading with anchor #nope "
            "in DemoSlow.md") in found
    assert len(found) == 2  # the web link and the in-page anchor are fine


def test_unexercised_alert_needs_a_reason_and_stale_markers_are_caught(tmp_path):
    slow = GOOD_SLOW.replace("<!-- not-exercised: needs hours of slowness -->\n", "")
    down = GOOD_DOWN.replace("# DemoDown\n", "# DemoDown\n<!-- not-exercised: lazy -->\n")
    report = rc.check_runbooks(make_repo(tmp_path, runbooks={"DemoDown": down,
                                                             "DemoSlow": slow}))
    found = " | ".join(messages(report))
    assert "no GameDay scenario expects DemoSlow" in found
    assert "stale <!-- not-exercised --> marker: scenario(s) demo-down expect DemoDown" in found


def test_scenario_runbook_must_exist_and_alerts_must_be_defined(tmp_path):
    scenarios = {"demo": SCENARIO, "other": """\
id: other
alerts:
  - {name: NoSuchAlert, deadline_s: 5}
  - {name: WatchdogMissing, source: deadman, deadline_s: 5}
runbook:
  path: runbooks/Elsewhere.md
"""}
    report = rc.check_runbooks(make_repo(tmp_path, scenarios=scenarios))
    found = messages(report)
    assert "gameday/scenarios/other.yaml: expects alert 'NoSuchAlert', which no rule in " \
           "monitoring/ defines" in found
    assert "gameday/scenarios/other.yaml: runs runbooks/Elsewhere.md, which does not exist" \
           in found
    # A deadman alert is known (the engine raises it) but still needs its runbook.
    assert "runbooks/WatchdogMissing.md: missing: alert WatchdogMissing has no runbook" in found


def test_runbook_url_must_point_at_the_runbook(tmp_path):
    rules = RULES.replace("runbook_url: runbooks/DemoSlow.md", "runbook_url: wiki/slow")
    report = rc.check_runbooks(make_repo(tmp_path, rules=rules))
    assert ("monitoring/prometheus/rules/demo.yml.j2: DemoSlow: runbook_url 'wiki/slow' "
            "should be 'runbooks/DemoSlow.md'") in messages(report)


def test_latest_journal_gives_the_verdicts(tmp_path):
    repo = make_repo(tmp_path)
    for run_id, started, ok in (("old", "2026-01-01T00:00:00", False),
                                ("new", "2026-02-01T00:00:00", True)):
        (repo / "reports" / run_id).mkdir(parents=True)
        (repo / "reports" / run_id / "journal.json").write_text(json.dumps({
            "run_id": run_id, "started_at": started, "dry_run": False, "scenarios": [{
                "id": "demo-down", "status": "held",
                "alerts": {"DemoDown": {"firing": 3.2, "resolved": 9.0}},
                "runbook": {"path": str(repo / "runbooks" / "DemoDown.md"), "ok": ok,
                            "results": [{"step": "verify", "line": 30, "exit_code": 0 if ok
                                         else 1, "timed_out": False}]}}]}))
    (repo / "reports" / "dry").mkdir()
    (repo / "reports" / "dry" / "journal.json").write_text(json.dumps(
        {"started_at": "2027-01-01", "dry_run": True, "scenarios": []}))
    report = rc.check_runbooks(repo)
    assert report.journal == "reports/new/journal.json"
    cov = {c.alert: c for c in report.coverage}
    assert cov["DemoDown"].verdicts == ["demo-down: held: fired, runbook ok"]
    scenario = json.loads((repo / "reports/old/journal.json").read_text())["scenarios"][0]
    assert rc.verdict(scenario, "DemoDown") == "held: fired, runbook FAILED (verify, line 30)"


def test_print_report_shows_matrix_and_problems(tmp_path):
    report = rc.check_runbooks(make_repo(tmp_path, runbooks={"DemoDown": GOOD_DOWN}))
    console = Console(record=True, width=200)
    rc.print_report(report, console)
    text = console.export_text()
    assert "runbook coverage" in text and "DemoDown" in text and "demo-down" in text
    assert "missing: alert DemoSlow has no runbook" in text
    assert "2 problem(s)" in text  # and the link to the missing runbook


def test_invoke_task_names_and_flags_are_read_from_tasks_py(tmp_path):
    path = tmp_path / "tasks.py"
    path.write_text(TASKS + '\n\n@task\ndef run_all(c, dry_run=False, scenario=None):\n'
                            '    pass\n\ndef helper(c):\n    pass\n')
    tasks = rc.invoke_tasks(path)
    assert set(tasks) == {"status", "deploy", "run-all"}
    assert tasks["status"] == {"--stack": True, "--json": False, "--no-json": False}
    assert tasks["run-all"]["--dry-run"] is False and tasks["run-all"]["--scenario"] is True


def test_slug_matches_github_anchors():
    assert slug("Mitigation") == "mitigation"
    assert slug("Before you start (humans)") == "before-you-start-humans"
    assert slug("`python -m infra.ops`") == "python--m-infraops"


def test_the_checked_in_runbooks_pass():
    """What `invoke runbooks` runs: every alert of monitoring/ has a valid runbook,
    exercised by a scenario or marked with the reason it is not."""
    report = rc.check_runbooks(REPO_ROOT)
    assert messages(report) == []
    assert {c.alert for c in report.coverage if c.runbook} == set(report.alerts)


def test_main_exit_status(tmp_path, capsys):
    assert rc.main(["--repo", str(make_repo(tmp_path / "good")), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True
    assert rc.main(["--repo", str(make_repo(tmp_path / "bad", runbooks={}))]) == 1
