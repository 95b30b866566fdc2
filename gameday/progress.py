"""What a GameDay shows while it runs: a live rich view in a terminal, one plain line
per event anywhere else (CI logs, `| tee`, a file), so a long catalog is never silent."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text


@dataclass
class ProgressState:
    scenario: str = ""
    index: str = ""
    phase: str = "starting"
    t: float = 0.0
    users: int = 0
    sent: int = 0
    ok: int = 0
    failed: int = 0
    indeterminate: int = 0
    inflight: int = 0
    window_error_rate: float | None = None
    window_p99_ms: float | None = None
    steady: bool | None = None
    alerts: list[str] = field(default_factory=list)
    events: list[str] = field(default_factory=list)


class Progress:
    """No-op progress (tests, --json, non-interactive runs)."""

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def update(self, **changes: Any) -> None: ...

    def event(self, text: str, t: float | None = None) -> None:
        """One timeline event; `t` is its own scenario time (default: the latest)."""

    def log(self, text: str) -> None: ...


class LiveProgress(Progress):
    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.state = ProgressState()
        self._live: Live | None = None

    def start(self) -> None:
        self._live = Live(self._render(), console=self.console, refresh_per_second=2,
                          transient=False)
        self._live.start()

    def stop(self) -> None:
        if self._live is not None:
            self._live.update(self._render())
            self._live.stop()
            self._live = None

    def update(self, **changes: Any) -> None:
        for key, value in changes.items():
            setattr(self.state, key, value)
        if self._live is not None:
            self._live.update(self._render())

    def event(self, text: str, t: float | None = None) -> None:
        when = self.state.t if t is None else t
        self.state.events = [*self.state.events[-5:], f"{when:7.1f}s  {text}"]
        self.update()

    def log(self, text: str) -> None:
        self.console.log(text)

    def _render(self) -> Group:
        s = self.state
        table = Table(show_header=False, box=None, padding=(0, 1))
        table.add_column(style="bold")
        table.add_column()
        steady = {None: "[dim]?[/]", True: "[green]steady[/]", False: "[red]breached[/]"}
        table.add_row("scenario", f"{s.index} [bold]{s.scenario}[/]")
        table.add_row("phase", f"[cyan]{s.phase}[/]  t={s.t:.1f}s  {steady[s.steady]}")
        rate = "–" if s.window_error_rate is None else f"{s.window_error_rate:.1%}"
        p99 = "–" if s.window_p99_ms is None else f"{s.window_p99_ms:.0f} ms"
        table.add_row("load", f"{s.users} users  sent {s.sent}  in flight {s.inflight}")
        table.add_row("results", f"[green]ok {s.ok}[/]  [red]failed {s.failed}[/]  "
                                 f"[yellow]indeterminate {s.indeterminate}[/]")
        table.add_row("window", f"errors {rate}  p99 {p99}")
        table.add_row("alerts", ", ".join(s.alerts) or "[dim]none firing[/]")
        events = Text("\n".join(s.events[-6:]) or "", style="dim")
        return Group(table, events)


class PlainProgress(Progress):
    """One line per event, scenario start and verdict, for output that is not a terminal.

    Only events print (not the load counters the live view refreshes twice a second):
    a CI log gets the timeline as it happens, a few dozen lines per scenario.
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.state = ProgressState()

    def _print(self, text: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} {text}", file=self.stream, flush=True)

    def update(self, **changes: Any) -> None:
        starting = "scenario" in changes and changes["scenario"] != self.state.scenario
        for key, value in changes.items():
            setattr(self.state, key, value)
        if starting:
            self._print(f"{self.state.index} {self.state.scenario}: scenario started")

    def event(self, text: str, t: float | None = None) -> None:
        when = self.state.t if t is None else t
        self._print(f"{self.state.index} {self.state.scenario} t={when:.1f}s: {text}")

    def log(self, text: str) -> None:
        self._print(text)


def progress_for(stream: TextIO | None = None) -> Progress:
    """The live view on a terminal, plain lines anywhere else."""
    stream = stream or sys.stderr
    isatty = getattr(stream, "isatty", None)
    return LiveProgress() if isatty is not None and isatty() else PlainProgress(stream)
