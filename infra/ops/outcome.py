"""What an operational command returns, and how it is shown.

A command returns an `Outcome`: a verdict (`ok`), an optional table and notes in
plain words. The CLI prints it as a table (for the human on call) or as JSON
(`--json`, for scripts); the exit status is the verdict, so a runbook's verify
step needs no output parsing. Every string shown goes through `redact` first.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import IO, Any

from rich.console import Console
from rich.table import Table

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


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def render(outcome: Outcome, secrets: Iterable[str], as_json: bool = False,
           stream: IO[str] | None = None) -> None:
    """Print an outcome (table and notes, or JSON) with the secrets masked."""
    secrets = list(secrets)
    out = stream or sys.stdout
    # Captured output (runbook runner, pipes) gets room for the wide tables.
    width = None if out.isatty() else 160
    console = Console(file=out, soft_wrap=True, highlight=False, width=width)
    if as_json:
        text = json.dumps(outcome.to_dict(), indent=2, default=str)
        console.print(redact(text, secrets), markup=False)
        return
    if outcome.columns and outcome.rows:
        table = Table(title=redact(outcome.title, secrets) or None, title_justify="left")
        for column in outcome.columns:
            table.add_column(column, overflow="fold")
        for row in outcome.rows:
            table.add_row(*(redact(_cell(v), secrets) for v in row))
        console.print(table)
    elif outcome.title:
        console.print(redact(outcome.title, secrets), markup=False)
    for note in outcome.notes:
        console.print(redact(note, secrets), markup=False)

