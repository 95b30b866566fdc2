"""The rules one runbook must follow: sections, links, block attributes, and steps
that call only what exists (`python -m infra.ops`, `invoke`, text filters) with the
documented `$CP_*` placeholders. The format is described in runbooks/README.md.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from gameday.runbook_markdown import Fence, headings, outside_code, slug
from gameday.runbook_sources import AlertRule, Problem, ops_parse_error, rel_path

REQUIRED_SECTIONS = ("Meaning", "Impact", "Diagnosis", "Mitigation")
#: Block attributes the GameDay runner understands.
ATTRIBUTES = ("step", "timeout", "attempts", "interval", "expect")
#: Placeholders a step may use. The runner always sets CP_STACK and CP_ALERT_NAME;
#: CP_ALERT_<LABEL> (HOST, SERVICE, INSTANCE, …) come from the firing alert's labels
#: and may be unset, so steps must write them as ${CP_ALERT_HOST:-} (`bash -u`).
PLACEHOLDERS = ("CP_STACK", "CP_ALERT_NAME")
#: CP_INCIDENT_START: when the incident began (ISO 8601), for a point-in-time restore;
#: a GameDay sets it to the moment its fault recorded, a human sets it by hand.
OPTIONAL_PLACEHOLDERS = ("CP_ALERT_HOST", "CP_ALERT_SERVICE", "CP_ALERT_INSTANCE",
                         "CP_INCIDENT_START")
_ALERT_LABEL = re.compile(r"^CP_ALERT_[A-Z0-9_]+$")
#: Besides the ops CLI and invoke, steps may only filter text.
FILTERS = ("grep", "head", "tail", "wc", "sort", "uniq", "echo", "printf", "test", "[",
           "true", "false", "sleep")

_LINK = re.compile(r"(?<!\!)\[(?P<text>[^\]]*)\]\((?P<target>[^)\s]+)(?:\s+\"[^\"]*\")?\)")
_REF_LINK = re.compile(r"^\s{0,3}\[[^\]]+\]:\s+(?P<target>\S+)", re.M)
_INLINE_CODE = re.compile(r"`[^`]*`")
_VAR = re.compile(r"\$\{?(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<rest>[^}\s\"']*)\}?")
_IPV4 = re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}\b")
_SEPARATORS = {"|", "||", "&&", ";", "&", "(", ")", "|&"}
_KEYWORDS = {"if", "then", "else", "elif", "fi", "for", "while", "until", "do", "done",
             "case", "esac", "function"}



# --- Markdown structure -------------------------------------------------------------------

def check_links(path: Path, text: str, repo_root: Path) -> list[Problem]:
    rel = rel_path(path, repo_root)
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
    rel = rel_path(path, repo_root)
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
        error = ops_parse_error(dummy)
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
                error = ops_parse_error(argv[3:])
                if error:
                    problems.append(Problem(rel, fence.line + offset,
                                            f"example: python -m infra.ops: {error}"))
            elif argv[0] == "invoke":
                problems.extend(Problem(rel, fence.line + offset, f"example: {msg}")
                                for msg in _invoke_problems(argv[1:], tasks))
    return problems
