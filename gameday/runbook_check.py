"""Check the runbook set against the alerts, the GameDay scenarios and the tools it calls.

    report = check_runbooks(REPO_ROOT)      # what `invoke runbooks` runs
    print_report(report, console)           # coverage matrix + problems (rich)
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
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import io
import json
import re
import shlex
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from gameday.runbook_markdown import (
    STEPS,
    Fence,
    RunbookError,
    headings,
    outside_code,
    parse_runbook,
    shell_fences,
    slug,
)
from infra.topology import REPO_ROOT, load_stack
from monitoring import alerts

REQUIRED_SECTIONS = ("Meaning", "Impact", "Diagnosis", "Mitigation")
#: Block attributes the GameDay runner understands.
ATTRIBUTES = ("step", "timeout", "attempts", "interval", "expect")
#: Placeholders a step may use. The runner always sets CP_STACK and CP_ALERT_NAME;
#: CP_ALERT_<LABEL> (HOST, SERVICE, INSTANCE, …) come from the firing alert's labels
#: and may be unset, so steps must write them as ${CP_ALERT_HOST:-} (`bash -u`).
PLACEHOLDERS = ("CP_STACK", "CP_ALERT_NAME")
OPTIONAL_PLACEHOLDERS = ("CP_ALERT_HOST", "CP_ALERT_SERVICE", "CP_ALERT_INSTANCE")
_ALERT_LABEL = re.compile(r"^CP_ALERT_[A-Z0-9_]+$")
#: Besides the ops CLI and invoke, steps may only filter text.
FILTERS = ("grep", "head", "tail", "wc", "sort", "uniq", "echo", "printf", "test", "[",
           "true", "false", "sleep")
NOT_EXERCISED = re.compile(r"<!--\s*not-exercised:\s*(?P<reason>.*?)\s*-->", re.S)

_LINK = re.compile(r"(?<!\!)\[(?P<text>[^\]]*)\]\((?P<target>[^)\s]+)(?:\s+\"[^\"]*\")?\)")
_REF_LINK = re.compile(r"^\s{0,3}\[[^\]]+\]:\s+(?P<target>\S+)", re.M)
_INLINE_CODE = re.compile(r"`[^`]*`")
_VAR = re.compile(r"\$\{?(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<rest>[^}\s\"']*)\}?")
_IPV4 = re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}\b")
_SEPARATORS = {"|", "||", "&&", ";", "&", "(", ")", "|&"}
_KEYWORDS = {"if", "then", "else", "elif", "fi", "for", "while", "until", "do", "done",
             "case", "esac", "function"}


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


# --- what exists: alerts, scenarios, tasks, ops commands ---------------------------------

def _rel(path: Path, root: Path) -> str:
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
            problems.append(Problem(_rel(path, repo_root), None, f"cannot render the rules to "
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
        rel = _rel(path, repo_root)
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


def _ops_parse_error(argv: list[str]) -> str | None:
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


# --- Markdown structure -------------------------------------------------------------------

def check_links(path: Path, text: str, repo_root: Path) -> list[Problem]:
    rel = _rel(path, repo_root)
    problems = []
    for number, line in outside_code(text):
        line = _INLINE_CODE.sub("", line)
        targets = [m["target"] for m in _LINK.finditer(line)]
        targets += [m["target"] for m in _REF_LINK.finditer(line)]
        for target in targets:
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # http:, mailto:, …
                continue
            file_part, _, anchor = target.partition("#")
            dest = (path.parent / file_part).resolve() if file_part else path
            if file_part and not dest.exists():
                problems.append(Problem(rel, number, f"link target {target!r} does not exist"))
                continue
            if anchor and dest.suffix == ".md" and dest.is_file():
                anchors = {slug(h) for _, _, h in headings(dest.read_text(encoding="utf-8"))}
                if anchor not in anchors:
                    problems.append(Problem(rel, number, f"link {target!r}: no heading with "
                                                         f"anchor #{anchor} in {dest.name}"))
    return problems


def check_sections(path: Path, text: str, alert: str, rule: AlertRule | None,
                   repo_root: Path) -> list[Problem]:
    rel = _rel(path, repo_root)
    found = headings(text)
    problems = []
    if not found or found[0][1] != 1 or found[0][2] != alert:
        problems.append(Problem(rel, found[0][0] if found else 1,
                                f"the first heading must be '# {alert}'"))
    sections = {h for _, level, h in found if level == 2}
    required = list(REQUIRED_SECTIONS)
    if rule is not None and rule.severity == "critical":
        required.append("Escalation")
    for name in required:
        if name not in sections:
            why = " (critical alert)" if name == "Escalation" else ""
            problems.append(Problem(rel, None, f"missing section '## {name}'{why}"))
    return problems


# --- executable blocks ----------------------------------------------------------------------

def check_attributes(fence: Fence, rel: str) -> list[Problem]:
    problems = []
    attrs = {}
    for word in fence.info.split()[1:]:
        key, eq, value = word.partition("=")
        if not eq:
            problems.append(Problem(rel, fence.line, f"block attribute {word!r} is not "
                                                     "key=value"))
            continue
        if key not in ATTRIBUTES:
            problems.append(Problem(rel, fence.line, f"unknown block attribute {key!r} "
                                                     f"(known: {', '.join(ATTRIBUTES)})"))
        attrs[key] = value.strip("\"'")
    if attrs and "step" not in attrs:
        problems.append(Problem(rel, fence.line, "block has attributes but no step=: the "
                                                 "runner would skip it as prose"))
    if "expect" in attrs:
        try:
            re.compile(attrs["expect"])
        except re.error as exc:
            problems.append(Problem(rel, fence.line, f"expect= is not a valid regex: {exc}"))
    if "attempts" in attrs and not (attrs["attempts"].isdigit()
                                    and 1 <= int(attrs["attempts"]) <= 100):
        problems.append(Problem(rel, fence.line, f"attempts={attrs['attempts']} must be a "
                                                 "whole number from 1 to 100"))
    for key in ("timeout", "interval"):
        if key in attrs:
            try:
                if not 0 < float(attrs[key]) <= 600:
                    raise ValueError
            except ValueError:
                problems.append(Problem(rel, fence.line, f"{key}={attrs[key]} must be a number "
                                                         "of seconds in (0, 600]"))
    return problems


def _logical_lines(body: str) -> list[tuple[int, str]]:
    """Lines with backslash continuations joined: (offset of first line, text)."""
    out: list[tuple[int, str]] = []
    pending, start = "", 0
    for offset, line in enumerate(body.splitlines(), 1):
        if not pending:
            start = offset
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        out.append((start, pending + line))
        pending = ""
    if pending:
        out.append((start, pending))
    return out


def _commands(line: str) -> list[list[str]]:
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    commands: list[list[str]] = [[]]
    for token in lexer:
        if token in _SEPARATORS:
            commands.append([])
        else:
            commands[-1].append(token)
    return [c for c in commands if c]


def _placeholder_problems(body: str) -> list[str]:
    problems = []
    for match in _VAR.finditer(body):
        name, rest = match["name"], match["rest"]
        if name in PLACEHOLDERS:
            continue
        if name in OPTIONAL_PLACEHOLDERS or _ALERT_LABEL.match(name):
            if not rest.startswith(":-"):
                problems.append(f"${name} may be unset (it comes from the alert's labels): "
                                f"write ${{{name}:-}}")
            continue
        problems.append(f"${name} is not a runbook placeholder (use "
                        f"{', '.join('$' + p for p in PLACEHOLDERS + OPTIONAL_PLACEHOLDERS)})")
    return problems


def check_command(argv: list[str], tasks: dict[str, dict[str, bool]]) -> list[str]:
    """Problems with one simple command of a step (an empty list if it is fine)."""
    while argv and (argv[0] == "!" or re.match(r"^[A-Za-z_]\w*=", argv[0])):
        argv = argv[1:]
    if not argv:
        return []
    # Redirections: drop the operator and its target (the path check sees the target).
    words = []
    skip = False
    for token in argv:
        if skip:
            skip = False
            continue
        if token in (">", ">>", "<", "2>", ">&", "2>&1"):
            skip = token not in ("2>&1",)
            continue
        words.append(token)
    if not words:
        return []
    head, args = words[0], words[1:]
    if head in _KEYWORDS:
        return [f"shell control flow ({head}) in a step: keep steps to plain commands and "
                "put logic in infra/ops"]
    if head in ("python", "python3"):
        if args[:2] != ["-m", "infra.ops"]:
            return [f"{' '.join(words[:3])}: steps run Python only as `python -m infra.ops`"]
        ops_args = args[2:]
        problems = _stack_flag_problems(ops_args)
        if not any(a == "--stack" or a.startswith("--stack=") for a in ops_args):
            problems.append(f"python -m infra.ops {' '.join(ops_args[:1])}: pass "
                            "--stack \"$CP_STACK\"")
        dummy = [re.sub(r"\$\{?[A-Za-z_]\w*(:-[^}]*)?\}?", "x", a) for a in ops_args]
        error = _ops_parse_error(dummy)
        if error:
            problems.append(f"python -m infra.ops {' '.join(ops_args[:1])}: {error}")
        return problems
    if head == "invoke":
        return _invoke_problems(args, tasks)
    if head in FILTERS:
        return []
    return [f"command {head!r}: steps call `python -m infra.ops …`, `invoke …` or a text "
            f"filter ({', '.join(FILTERS)})"]


def _invoke_problems(args: list[str], tasks: dict[str, dict[str, bool]]) -> list[str]:
    """Tasks and flags of an `invoke` command line (several tasks may follow each other)."""
    problems: list[str] = []
    current: str | None = None
    expect_value = False
    for token in args:
        if expect_value:  # the value of the previous flag
            expect_value = False
            continue
        if token.startswith("-"):
            flag, eq, _value = token.partition("=")
            if current is None:
                problems.append(f"invoke {token}: core options are not for runbook steps")
            elif flag not in tasks[current]:
                problems.append(f"invoke {current}: no flag {flag} (it has: "
                                f"{', '.join(sorted(tasks[current])) or 'none'})")
            else:
                expect_value = tasks[current][flag] and not eq
            continue
        if token not in tasks:
            problems.append(f"invoke {token}: no such task in tasks.py (tasks: "
                            f"{', '.join(sorted(tasks))})")
            current = None
            continue
        current = token
    if not args:
        problems.append("invoke with no task")
    return problems


def _stack_flag_problems(args: list[str]) -> list[str]:
    problems = []
    for i, token in enumerate(args):
        value = None
        if token == "--stack" and i + 1 < len(args):
            value = args[i + 1]
        elif token.startswith("--stack="):
            value = token.split("=", 1)[1]
        if value is not None and value not in ("$CP_STACK", "${CP_STACK}"):
            problems.append(f"--stack {value}: use --stack \"$CP_STACK\" (the runner fills it)")
    return problems


def check_block(fence: Fence, rel: str, tasks: dict[str, dict[str, bool]]) -> list[Problem]:
    problems = [Problem(rel, fence.line, msg) for msg in _placeholder_problems(fence.body)]
    for offset, line in _logical_lines(fence.body):
        where = fence.line + offset
        try:
            commands = _commands(line)
        except ValueError as exc:
            problems.append(Problem(rel, where, f"cannot parse as shell: {exc}"))
            continue
        for argv in commands:
            for token in argv:
                if token.startswith("/") or "=/" in token or token.startswith("~"):
                    problems.append(Problem(rel, where, f"hard-coded path {token!r}: call an "
                                                        "ops command or a task instead"))
                elif _IPV4.search(token) or token.startswith("localhost"):
                    problems.append(Problem(rel, where, f"hard-coded address in {token!r}: "
                                                        "the ops commands know the stack's"))
            problems.extend(Problem(rel, where, msg) for msg in check_command(argv, tasks))
            if argv and argv[0] == "invoke":
                problems.extend(Problem(rel, where, m) for m in _stack_flag_problems(argv))
    return problems


def check_example(fence: Fence, rel: str, tasks: dict[str, dict[str, bool]]) -> list[Problem]:
    """A block for humans (no step=): its ops and invoke commands must still exist, but
    it may name hosts and stacks (`--host app1`) to show what to type."""
    problems = []
    for offset, line in _logical_lines(fence.body):
        try:
            commands = _commands(line)
        except ValueError:
            continue  # prose blocks may hold any shell
        for argv in commands:
            if argv[:3] in (["python", "-m", "infra.ops"], ["python3", "-m", "infra.ops"]):
                error = _ops_parse_error(argv[3:])
                if error:
                    problems.append(Problem(rel, fence.line + offset,
                                            f"example: python -m infra.ops: {error}"))
            elif argv[0] == "invoke":
                problems.extend(Problem(rel, fence.line + offset, f"example: {msg}")
                                for msg in _invoke_problems(argv[1:], tasks))
    return problems


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
        rel = _rel(path, repo_root)
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
                  runbooks=[_rel(p, repo_root) for p in runbooks],
                  coverage=list(coverage.values()), problems=problems,
                  journal=_rel(journal[0], repo_root) if journal else None)


# --- output ----------------------------------------------------------------------------------

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
