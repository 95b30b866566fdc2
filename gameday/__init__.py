"""GameDay engine: scenario files in, a verdict per hypothesis and a report out.

A scenario (``gameday/scenarios/<id>.yaml``) is data, in the Chaos Toolkit model:
hypothesis, steady state, load, fault, expected alerts, runbook, recovery deadline,
data checks and stop conditions. The engine drives a deployed stack through a target
driver (``infra.targets``), records one timeline per run and writes a report.

Public API (what ``tasks.py`` calls):

- ``run_gameday(topology, scenario_ids=None, dry_run=False, ...) -> GamedayRun``
- ``list_scenarios(topology=None) -> list[ScenarioSummary]``
- ``cleanup(topology) -> CleanupReport``
- ``load_catalog(directory=None) -> dict[str, Scenario]``
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gameday.cleanup import CleanupReport, cleanup
    from gameday.engine import GamedayRun, list_scenarios, run_gameday
    from gameday.scenario import Scenario, ScenarioSummary, load_catalog

__all__ = [
    "CleanupReport", "GamedayRun", "Scenario", "ScenarioSummary", "cleanup", "list_scenarios",
    "load_catalog", "run_gameday",
]

# Imported lazily: `import gameday` must stay cheap for `invoke --list` and must not
# pull httpx/psycopg into processes that only validate scenario files.
_LAZY = {
    "cleanup": "gameday.cleanup", "CleanupReport": "gameday.cleanup",
    "run_gameday": "gameday.engine", "list_scenarios": "gameday.engine",
    "GamedayRun": "gameday.engine",
    "Scenario": "gameday.scenario", "ScenarioSummary": "gameday.scenario",
    "load_catalog": "gameday.scenario",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'gameday' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
