"""How the ops CLI shows an `Outcome`: a rich table and notes, or JSON.

The one module of infra/ that knows a terminal library, imported by the CLI alone
(`infra.ops.cli`), so that the commands and their `Outcome` stay importable without
it (the GameDay runner and tests call the commands as functions).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from typing import IO, Any

from rich.console import Console
from rich.table import Table

from infra.ops.outcome import Outcome, redact


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

