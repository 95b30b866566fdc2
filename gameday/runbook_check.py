"""Check the runbook set against the alerts, the GameDay scenarios and the tools it calls.

    report = check_runbooks(REPO_ROOT)      # what `invoke runbooks` runs
    print_report(report, console)           # coverage matrix + problems (runbook_report)
    python -m gameday.runbook_check         # the same from a shell; exit 1 on problems

What it checks (the format itself is described in runbooks/README.md):

- every alert in `monitoring/prometheus/rules/*.yml.j2` (rendered for the lab stack,
  as the prometheus role does) has `runbooks/<Alert>.md`, and its `runbook_url`
  points there; every runbook names an existing alert (or a `source: deadman` alert
  that a scenario expects, which the GameDay engine raises itself);
- the title and the Meaning / Impact / Diagnosis / Mitigation sections (and
  Escalation for critical alerts);
- every executable block parses exactly as the GameDay runner parses it
  (`gameday.runbook_markdown.parse_runbook`), has only known attributes, and calls only
  `python -m infra.ops <command>` with options its parser accepts, `invoke <task>`
  with a task and flags tasks.py defines, and a few text filters; no absolute path,
  no address, no stack name: only the documented `$CP_*` placeholders;
- a runbook a scenario runs has a block for each step the scenario requests;
- relative links (and their #anchors) resolve;
- every alert is expected by some scenario, or its runbook says why not with
  `<!-- not-exercised: reason -->` (and a stale marker is a problem too).

The coverage matrix adds the latest GameDay verdict per alert and scenario from
`reports/*/journal.json`, when there is one.

This module puts the check together; its parts are `runbook_markdown` (the format, the
runner's own parser), `runbook_sources` (the alerts, scenarios, tasks and ops
commands the runbooks are held against), `runbook_lint` (the rules for one runbook)
and `runbook_report` (the report and its printing).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from gameday.runbook_lint import (
    check_attributes,
    check_block,
    check_example,
    check_links,
    check_sections,
)
from gameday.runbook_markdown import STEPS, RunbookError, parse_runbook, shell_fences
from gameday.runbook_report import Coverage, Report, print_report
from gameday.runbook_sources import (
    Problem,
    invoke_tasks,
    rel_path,
    rules_by_name,
    scenario_refs,
)
from infra.topology import REPO_ROOT

NOT_EXERCISED = re.compile(r"<!--\s*not-exercised:\s*(?P<reason>.*?)\s*-->", re.S)


# --- journal verdicts ----------------------------------------------------------------------

def latest_journal(repo_root: Path) -> tuple[Path, dict[str, Any]] | None:
    """The most recent non-dry-run GameDay journal under reports/."""
    best: tuple[str, Path, dict[str, Any]] | None = None
    for path in (repo_root / "reports").glob("*/journal.json"):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if data.get("dry_run"):
            continue
        key = str(data.get("started_at") or path.parent.name)
        if best is None or key > best[0]:
            best = (key, path, data)
    return (best[1], best[2]) if best else None


def verdict(scenario: dict[str, Any], alert: str) -> str:
    """One alert in one scenario of a journal, in a few words."""
    status = scenario.get("status", "?")
    if status not in ("held", "falsified"):
        return f"{status}"
    detection = (scenario.get("alerts") or {}).get(alert) or {}
    fired = "fired" if detection.get("firing") is not None else "did not fire"
    runbook = scenario.get("runbook") or {}
    rb = ""
    if runbook and str(runbook.get("path", "")).endswith(f"/{alert}.md"):
        if runbook.get("ok"):
            rb = ", runbook ok"
        else:
            failed = next((r for r in runbook.get("results", []) if not (
                r.get("exit_code") == 0 and not r.get("timed_out"))), None)
            where = f" ({failed['step']}, line {failed['line']})" if failed else ""
            rb = f", runbook FAILED{where}" + (f": {runbook['problem']}"
                                                if runbook.get("problem") else "")
    return f"{status}: {fired}{rb}"


# --- the whole check --------------------------------------------------------------------------

def check_runbooks(repo_root: Path = REPO_ROOT) -> Report:
    """Check every runbook under `repo_root/runbooks` (see the module docstring)."""
    repo_root = Path(repo_root).resolve()
    problems: list[Problem] = []
    rules = rules_by_name(repo_root, problems)
    scenarios = scenario_refs(repo_root, problems)
    deadman = {name for s in scenarios for name, _req, source in s.alerts if source == "deadman"}
    known = set(rules) | deadman
    tasks_py = repo_root / "tasks.py"
    tasks = invoke_tasks(tasks_py) if tasks_py.is_file() else {}
    runbook_dir = repo_root / "runbooks"
    runbooks = sorted(p for p in runbook_dir.glob("*.md") if p.name != "README.md")

    coverage: dict[str, Coverage] = {
        name: Coverage(alert=name, severity=rules[name].severity if name in rules else
                       "deadman", runbook=None) for name in sorted(known)}
    for name, rule in rules.items():
        if rule.runbook_url and rule.runbook_url != f"runbooks/{name}.md":
            problems.append(Problem(rule.source, None, f"{name}: runbook_url "
                                    f"{rule.runbook_url!r} should be 'runbooks/{name}.md'"))
        elif not rule.runbook_url:
            problems.append(Problem(rule.source, None, f"{name}: no runbook_url annotation"))

    blocks_of: dict[str, dict[str, int]] = {}
    for path in runbooks:
        rel = rel_path(path, repo_root)
        alert = path.stem
        text = path.read_text(encoding="utf-8")
        if alert not in known:
            problems.append(Problem(rel, None, f"no alert named {alert!r} in monitoring/ (nor a "
                                               "deadman alert of a scenario); rename or delete"))
            continue
        cov = coverage[alert]
        cov.runbook = rel
        problems.extend(check_sections(path, text, alert, rules.get(alert), repo_root))
        problems.extend(check_links(path, text, repo_root))
        marker = NOT_EXERCISED.search(text)
        if marker:
            cov.not_exercised = marker["reason"] or None
            if not marker["reason"]:
                problems.append(Problem(rel, None, "<!-- not-exercised: --> needs a reason"))
        try:
            blocks = parse_runbook(text, rel)
        except RunbookError as exc:
            problems.append(Problem(rel, None, f"the GameDay runner cannot parse it: {exc}"))
            blocks = []
        cov.steps = {step: sum(1 for b in blocks if b.step == step) for step in STEPS}
        blocks_of[rel] = cov.steps
        for fence in shell_fences(text):
            problems.extend(check_attributes(fence, rel))
            if re.search(r"\bstep=", fence.info):
                problems.extend(check_block(fence, rel, tasks))
            else:
                problems.extend(check_example(fence, rel, tasks))
    readme = runbook_dir / "README.md"
    if readme.is_file():
        problems.extend(check_links(readme, readme.read_text(encoding="utf-8"), repo_root))

    for scenario in scenarios:
        for name, required, _source in scenario.alerts:
            if name in coverage:
                coverage[name].scenarios.append(scenario.id if required else f"{scenario.id}?")
            else:
                problems.append(Problem(scenario.path, None, f"expects alert {name!r}, which "
                                                             "no rule in monitoring/ defines"))
        if scenario.runbook:
            steps = blocks_of.get(scenario.runbook)
            if steps is None:
                problems.append(Problem(scenario.path, None, f"runs {scenario.runbook}, which "
                                                             "does not exist"))
                continue
            missing = [s for s in scenario.steps if not steps.get(s)]
            if missing:
                problems.append(Problem(scenario.runbook, None, f"scenario {scenario.id} runs "
                                        f"its {'/'.join(missing)} step(s), but it has no "
                                        f"```sh step={missing[0]} block"))

    journal = latest_journal(repo_root)
    for cov in coverage.values():
        if cov.runbook is None:
            problems.append(Problem(f"runbooks/{cov.alert}.md", None,
                                    f"missing: alert {cov.alert} has no runbook"))
        if not cov.scenarios and not cov.not_exercised and cov.runbook is not None:
            problems.append(Problem(cov.runbook, None, f"no GameDay scenario expects "
                                    f"{cov.alert}: add one, or say why not with "
                                    "<!-- not-exercised: reason -->"))
        if cov.scenarios and cov.not_exercised:
            problems.append(Problem(cov.runbook or cov.alert, None, "stale <!-- not-exercised "
                                    f"--> marker: scenario(s) {', '.join(cov.scenarios)} "
                                    f"expect {cov.alert}"))
        if journal is not None:
            for entry in journal[1].get("scenarios", []):
                if cov.alert in (entry.get("alerts") or {}):
                    cov.verdicts.append(f"{entry.get('id')}: {verdict(entry, cov.alert)}")
    return Report(repo_root=repo_root, alerts=sorted(known),
                  runbooks=[rel_path(p, repo_root) for p in runbooks],
                  coverage=list(coverage.values()), problems=problems,
                  journal=rel_path(journal[0], repo_root) if journal else None)


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gameday.runbook_check",
                                     description="check runbooks/ against alerts and scenarios")
    parser.add_argument("--repo", type=Path, default=REPO_ROOT)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(list(argv) if argv is not None else None)
    report = check_runbooks(args.repo)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, default=str))
    else:
        print_report(report)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
