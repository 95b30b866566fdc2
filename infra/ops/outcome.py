"""What an operational command returns.

A command returns an `Outcome`: a verdict (`ok`), an optional table and notes in
plain words. The CLI prints it (`infra.ops.console`) as a plain-text table (for the
human on call) or as JSON (`--json`, for scripts); the exit status is the verdict, so a
runbook's verify step needs no output parsing. Every string shown goes through
`redact` first.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from infra.paths import secrets_dir
from infra.secrets import SECRET_NAMES
from infra.topology import Topology

REDACTED = "[redacted]"


class OpsError(Exception):
    """The command cannot run as asked; the message says why and what to pass instead."""


def unreadable_secret(topology: Topology, name: str, exc: OSError) -> OpsError:
    """The error for a stack secret the command cannot read (not deployed, not root)."""
    return OpsError(f"cannot read the {name} secret of stack {topology.stack} "
                    f"({exc.strerror}): is the stack deployed, and are you root?")


@dataclass
class Outcome:
    """A command's result: `ok` becomes the exit status (0 or 1)."""

    ok: bool = True
    title: str = ""
    columns: list[str] = field(default_factory=list)
    rows: list[list[Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def note(self, text: str) -> None:
        self.notes.append(text)

    def fail(self, text: str) -> None:
        self.ok = False
        self.notes.append(text)

    def records(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row, strict=False)) for row in self.rows]

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "title": self.title, "rows": self.records(),
                "notes": self.notes}


def stack_secret_values(topology: Topology) -> list[str]:
    """The stack's secret values, longest first (so no secret is half-masked)."""
    values = []
    for name in SECRET_NAMES:
        try:
            value = (secrets_dir(topology) / name).read_text().strip()
        except OSError:
            continue
        if len(value) >= 8:  # a short value would mask ordinary words
            values.append(value)
    return sorted(values, key=len, reverse=True)


def redact(text: str, secrets: Iterable[str]) -> str:
    for value in secrets:
        text = text.replace(value, REDACTED)
    return text
