"""The alerts the stack can raise, read from the rendered rule files.

The runbook checker (every alert needs `runbooks/<AlertName>.md`), the GameDay
scenarios (expected alerts) and the tests all need the list of alert names; it is
read from the rules as rendered for a stack, so it can never drift from them:

    from monitoring.alerts import alert_names
    alert_names()            # ['AlertmanagerConfigReloadFailed', 'AlertmanagerDown', …]

or `python -m monitoring alerts` (one name a line; `--json` for details).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from infra.topology import Topology, load_stack
from monitoring.render import render_all

#: Stack the alert list is read from when none is given.
DEFAULT_STACK = "lab"


@dataclass(frozen=True)
class AlertRule:
    name: str
    group: str
    rule_file: str
    expr: str
    for_: str
    labels: dict[str, str]
    annotations: dict[str, str]

    @property
    def severity(self) -> str:
        return self.labels.get("severity", "")

    @property
    def runbook_url(self) -> str:
        return self.annotations.get("runbook_url", "")

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "severity": self.severity, "group": self.group,
                "rule_file": self.rule_file, "for": self.for_,
                "summary": self.annotations.get("summary", ""),
                "runbook_url": self.runbook_url, "labels": self.labels}


def rule_groups(topology: Topology | None = None) -> dict[str, list[dict[str, Any]]]:
    """Rendered rule file name → its rule groups, for a stack (lab by default)."""
    topology = topology or load_stack(DEFAULT_STACK)
    files: dict[str, list[dict[str, Any]]] = {}
    for item in render_all(topology):
        if item.relative.parent == Path("prometheus/rules"):
            files[item.relative.name] = (yaml.safe_load(item.text) or {}).get("groups", [])
    return files


def alert_rules(topology: Topology | None = None) -> list[AlertRule]:
    """Every alerting rule, in file and group order."""
    rules = []
    for rule_file, groups in rule_groups(topology).items():
        for group in groups:
            for rule in group.get("rules", []):
                if "alert" not in rule:
                    continue
                rules.append(AlertRule(
                    name=rule["alert"], group=group["name"], rule_file=rule_file,
                    expr=str(rule["expr"]), for_=str(rule.get("for", "0s")),
                    labels={k: str(v) for k, v in (rule.get("labels") or {}).items()},
                    annotations={k: str(v) for k, v in (rule.get("annotations") or {}).items()},
                ))
    return rules


def alert_names(topology: Topology | None = None) -> list[str]:
    """Sorted, unique names of every alert the stack's rules can raise."""
    return sorted({rule.name for rule in alert_rules(topology)})


def runbook_path(name: str) -> str:
    """Repository-relative runbook of an alert, as its runbook_url annotation says."""
    return f"runbooks/{name}.md"
