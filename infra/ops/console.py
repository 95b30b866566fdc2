"""How the ops CLI shows an `Outcome`: a plain-text table and notes, or JSON.

Plain text on purpose: the same bytes on a terminal, in a pipe, in the runbook
runner's captured output and in a GameDay report, never wrapped or folded at a
width, so a grep or an `expect=` in a runbook step sees whole cells. Imported by the
CLI alone (`infra.ops.cli`); the commands and their `Outcome` know no output at all
(the GameDay runner and tests call the commands as functions).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from typing import IO, Any

from infra.ops.outcome import Outcome, redact

#: Between two columns.
GAP = "  "


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    # One row per line: a multi-line value (a tool's message) stays on its row.
    return " ".join(str(value).splitlines())


def table_lines(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """The header, a rule, then one line per row; each column as wide as its widest cell."""
    widths = [max(len(text) for text in (column, *(row[i] for row in rows)))
              for i, column in enumerate(columns)]

    def line(cells: Sequence[str]) -> str:
        padded = (text.ljust(width) for text, width in zip(cells, widths, strict=True))
        return GAP.join(padded).rstrip()

    return [line(columns), line(["-" * width for width in widths]), *map(line, rows)]


def render(outcome: Outcome, secrets: Iterable[str], as_json: bool = False,
           stream: IO[str] | None = None) -> None:
    """Print an outcome (table and notes, or JSON) with the secrets masked."""
    secrets = list(secrets)
    out = stream or sys.stdout
    if as_json:
        print(redact(json.dumps(outcome.to_dict(), indent=2, default=str), secrets), file=out)
        return
    if outcome.title:
        print(redact(outcome.title, secrets), file=out)
    if outcome.columns and outcome.rows:
        count = len(outcome.columns)
        rows = [[redact(_cell(value), secrets) for value in row] + [""] * (count - len(row))
                for row in outcome.rows]
        for text in table_lines(outcome.columns, rows):
            print(text, file=out)
    for note in outcome.notes:
        print(redact(note, secrets), file=out)
