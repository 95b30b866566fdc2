"""What the runbook check holds the runbooks against: the alert rules, the GameDay
scenarios, tasks.py's Invoke tasks and the ops CLI's parser.

Read from the tree being checked (`repo_root`), except the ops parser, which is this
checkout's `infra.ops.cli` (a runbook step calls the installed commands).
"""

from __future__ import annotations

import ast
import contextlib
import io
from dataclasses import dataclass
from pathlib import Path

import yaml

from gameday.runbook_markdown import STEPS
from infra.topology import load_stack
from monitoring import alerts


@dataclass(frozen=True)
class Problem:
    path: str
    line: int | None
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}" if self.line else \
            f"{self.path}: {self.message}"


@dataclass(frozen=True)
class AlertRule:
    name: str
    severity: str
    runbook_url: str | None
    source: str  # repo-relative rule file, or "deadman (GameDay engine)"


@dataclass(frozen=True)
class ScenarioRef:
    id: str
    path: str
    #: (alert name, required, source) as the scenario expects them.
    alerts: tuple[tuple[str, bool, str], ...]
    runbook: str | None  # repo-relative runbook the engine runs, if any
    steps: tuple[str, ...]


# --- what exists: alerts, scenarios, tasks, ops commands ---------------------------------

def rel_path(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def rules_by_name(repo_root: Path,
                  problems: list[Problem] | None = None) -> dict[str, AlertRule]:
    """Every alerting rule of the tree, rendered for the lab stack the way the
    prometheus role does (by `monitoring.alerts`, the one loader of the rule files)."""
    def unreadable(path: Path, exc: Exception) -> None:
        if problems is not None:
            problems.append(Problem(rel_path(path, repo_root), None, f"cannot render the rules to "
                                                                 f"list their alerts: {exc}"))

    rules_dir = repo_root / "monitoring" / "prometheus" / "rules"
    return {r.name: AlertRule(name=r.name, severity=r.severity,
                              runbook_url=r.runbook_url or None,
                              source=f"monitoring/prometheus/rules/{r.rule_file}.j2")
            for r in alerts.alert_rules(load_stack("lab"), rules_dir, unreadable)}


def scenario_refs(repo_root: Path, problems: list[Problem] | None = None) -> list[ScenarioRef]:
    """What each GameDay scenario expects and runs (read leniently: the scenario
    schema is the engine's to enforce; here only `alerts` and `runbook` matter)."""
    refs = []
    for path in sorted((repo_root / "gameday" / "scenarios").glob("*.yaml")):
        rel = rel_path(path, repo_root)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            if problems is not None:
                problems.append(Problem(rel, None, f"not valid YAML: {exc}"))
            continue
        alerts = tuple((a["name"], bool(a.get("required", True)), a.get("source", "prometheus"))
                       for a in data.get("alerts", []) or [] if isinstance(a, dict)
                       and a.get("name"))
        runbook = data.get("runbook")
        path_of_runbook = None
        steps: tuple[str, ...] = ()
        if isinstance(runbook, dict):
            path_of_runbook = runbook.get("path") or (f"runbooks/{alerts[0][0]}.md"
                                                       if alerts else None)
            steps = tuple(runbook.get("steps") or STEPS)
        refs.append(ScenarioRef(id=str(data.get("id", path.stem)), path=rel, alerts=alerts,
                                runbook=path_of_runbook, steps=steps))
    return refs


def invoke_tasks(tasks_py: Path) -> dict[str, dict[str, bool]]:
    """Task name → {flag: takes a value} from tasks.py's @task functions (as invoke
    names them: underscores become dashes, a trailing underscore is dropped)."""
    tree = ast.parse(tasks_py.read_text(encoding="utf-8"), str(tasks_py))
    tasks: dict[str, dict[str, bool]] = {}
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef) or not any(
                (isinstance(d, ast.Name) and d.id == "task") or
                (isinstance(d, ast.Call) and isinstance(d.func, ast.Name) and d.func.id == "task")
                for d in node.decorator_list):
            continue
        args = node.args.args[1:]  # the Context
        defaults = [None] * (len(args) - len(node.args.defaults)) + list(node.args.defaults)
        flags = {}
        for arg, default in zip(args, defaults, strict=True):
            name = arg.arg.rstrip("_").replace("_", "-")
            is_bool = isinstance(default, ast.Constant) and isinstance(default.value, bool)
            flags[f"--{name}"] = not is_bool
            if is_bool:
                flags[f"--no-{name}"] = False
        tasks[node.name.rstrip("_").replace("_", "-")] = flags
    return tasks


def ops_parse_error(argv: list[str]) -> str | None:
    """None if `python -m infra.ops <argv>` parses, else argparse's complaint."""
    from infra.ops.cli import build_parser

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            build_parser().parse_args(argv)
        except SystemExit as exc:
            if exc.code not in (0, None):
                lines = err.getvalue().strip().splitlines()
                last = lines[-1] if lines else "does not parse"
                return last.split(": error: ", 1)[-1]
    return None
