"""What a dry run checks beyond the scenario schema: the names a scenario uses must
exist where a run would look for them.

A typo in an expected alert, a PromQL probe that does not parse or a runbook step the
runbook lacks would otherwise show up only minutes into a run, as a falsified
hypothesis. Errors and warnings are `file:line: field: problem`.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from gameday.runbook_markdown import parse_runbook
from gameday.scenario import ENGINE_ALERTS, Scenario
from infra.topology import Topology
from monitoring.alerts import alert_names, rule_groups
from monitoring.metrics_catalog import known_metric_names
from monitoring.promql import metric_names
from monitoring.validate import run_tool, tool_path


@dataclass
class CatalogCheck:
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def promql_parse_error(query: str) -> str | None:
    """promtool's complaint about `query`, or None if it parses.

    promtool has no "check this expression" command, so the query goes into a scratch
    rule file as a recording rule, which `promtool check rules` parses.
    """
    doc = {"groups": [{"name": "gameday-dry-run",
                       "rules": [{"record": "gameday:dry_run:probe", "expr": query}]}]}
    with tempfile.TemporaryDirectory(prefix="civicpulse-dry-run-") as tmp:
        path = Path(tmp) / "probe.rules.yml"
        path.write_text(yaml.safe_dump(doc))
        result = run_tool("promtool check rules", [tool_path("promtool"), "check", "rules",
                                                   str(path)])
    if result.returncode == 0:
        return None
    lines = [line.strip() for line in result.output.splitlines()
             if line.strip() and "Checking" not in line and "FAILED" not in line]
    return "; ".join(lines).replace(str(path), "query") or result.output


def check_catalog(scenarios: Sequence[Scenario], topology: Topology) -> CatalogCheck:
    """Expected alerts against the rules, PromQL probes against promtool and the metric
    catalog, runbook steps against the runbook."""
    out = CatalogCheck()
    rules = set(alert_names(topology)) | set(ENGINE_ALERTS.values())
    recorded = {rule["record"] for groups in rule_groups(topology).values()
                for group in groups or [] for rule in group.get("rules", []) or []
                if "record" in rule}
    known = known_metric_names() | recorded
    for s in scenarios:
        for i, alert in enumerate(s.alerts):
            if alert.name not in rules:
                out.errors.append(f"{s.where(['alerts', i, 'name'])}: no alert rule defines "
                                  f"{alert.name} (see monitoring/prometheus/rules/)")
        for i, probe in enumerate(s.steady_state.probes):
            if probe.promql is None:
                continue
            where = s.where(["steady_state", "probes", i, "promql", "query"])
            problem = promql_parse_error(probe.promql.query)
            if problem:
                out.errors.append(f"{where}: does not parse: {problem}")
                continue
            for name in sorted(metric_names(probe.promql.query) - known):
                out.warnings.append(f"{where}: no target of ours is known to export {name} "
                                    "(monitoring/metrics_catalog.py); the probe may be empty")
        path = s.runbook_path
        if s.runbook is not None and path is not None and path.is_file():
            have = {b.step for b in parse_runbook(path.read_text(encoding="utf-8"), str(path))}
            for i, step in enumerate(s.runbook.steps):
                if step not in have:
                    out.errors.append(f"{s.where(['runbook', 'steps', i])}: {path.name} has no "
                                      f"`step={step}` block")
    return out
