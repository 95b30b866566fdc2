"""The runbook Markdown format: fenced blocks, headings, anchors, executable steps.

One parser for both readers of a runbook: the GameDay runner
(`gameday.runbook_runner`) runs the blocks `parse_runbook` returns, and the runbook
check (`gameday.runbook_check`) lints the same blocks, so a runbook that passes the
check is one the runner reads the same way. The format itself is described in
runbooks/README.md.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

STEPS = ("diagnose", "mitigate", "verify")
#: Info strings that mark a shell block (the first word).
SHELLS = ("sh", "bash", "shell", "console")
_FENCE = re.compile(r"^ {0,3}(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
_HEADING = re.compile(r"^(?P<level>#{1,6})\s+(?P<text>.+?)\s*#*\s*$")


class RunbookError(Exception):
    """A runbook is malformed (the message names file and line)."""


@dataclass(frozen=True)
class Fence:
    """One fenced code block: its opening line (1-based), info string and body."""

    line: int
    info: str
    body: str
    #: The last line of the block (its closing fence, or the file's last line).
    end: int
    #: False when the file ends before the closing fence.
    closed: bool = True


def fences(text: str) -> list[Fence]:
    """Every fenced code block, in file order (CommonMark: up to 3 spaces of indent,
    closed by a fence of the same character at least as long)."""
    found, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        fence, info, start, body = match["fence"], match["info"].strip(), i + 1, []
        i += 1
        while i < len(lines) and not (lines[i].strip().startswith(fence)
                                      and lines[i].strip().strip(fence[0]) == ""):
            body.append(lines[i])
            i += 1
        closed = i < len(lines)
        found.append(Fence(line=start, info=info, body="\n".join(body),
                           end=i + 1 if closed else len(lines), closed=closed))
        i += 1
    return found


def shell_fences(text: str) -> list[Fence]:
    """Every fenced block whose info string starts with a shell name."""
    return [f for f in fences(text) if f.info.split()[:1] and f.info.split()[0] in SHELLS]


def outside_code(text: str) -> list[tuple[int, str]]:
    """(line number, line) of the lines outside fenced code blocks."""
    in_code = {n for f in fences(text) for n in range(f.line, f.end + 1)}
    return [(number, line) for number, line in enumerate(text.splitlines(), 1)
            if number not in in_code]


def headings(text: str) -> list[tuple[int, int, str]]:
    """(line, level, text) of every ATX heading outside code."""
    found = []
    for number, line in outside_code(text):
        match = _HEADING.match(line)
        if match:
            found.append((number, len(match["level"]), match["text"]))
    return found


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = unicodedata.normalize("NFKC", heading).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


@dataclass(frozen=True)
class RunbookBlock:
    step: str
    code: str
    line: int
    timeout_s: float | None = None
    attempts: int = 1
    interval_s: float = 1.0
    #: A regex the block's stdout must contain (re.search, multiline) for it to pass.
    expect: str | None = None


def parse_runbook(text: str, source: str = "runbook") -> list[RunbookBlock]:
    """The executable blocks of a Markdown runbook, in file order."""
    blocks: list[RunbookBlock] = []
    for fence in fences(text):
        if not fence.closed:
            raise RunbookError(f"{source}:{fence.line}: code block is never closed")
        words = fence.info.split()
        if not words or words[0] not in SHELLS:
            continue
        attrs = _attributes(words[1:], source, fence.line)
        if "step" not in attrs:
            continue
        if attrs["step"] not in STEPS:
            raise RunbookError(f"{source}:{fence.line}: step={attrs['step']} is not one of "
                               f"{', '.join(STEPS)}")
        try:
            blocks.append(RunbookBlock(
                step=attrs["step"], code=fence.body, line=fence.line,
                timeout_s=float(attrs["timeout"]) if "timeout" in attrs else None,
                attempts=max(1, min(100, int(attrs.get("attempts", 1)))),
                interval_s=max(0.0, min(60.0, float(attrs.get("interval", 1.0)))),
                expect=_compiled(attrs["expect"]) if "expect" in attrs else None,
            ))
        except (ValueError, re.error) as exc:
            raise RunbookError(f"{source}:{fence.line}: bad block attribute ({exc})") from None
    return blocks


def _compiled(pattern: str) -> str:
    re.compile(pattern)
    return pattern


def _attributes(words: Sequence[str], source: str, line: int) -> dict[str, str]:
    attrs = {}
    for word in words:
        if "=" not in word:
            raise RunbookError(f"{source}:{line}: block attribute {word!r} is not key=value")
        key, value = word.split("=", 1)
        attrs[key] = value.strip("\"'")
    return attrs
