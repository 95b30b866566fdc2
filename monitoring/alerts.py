"""The alerts the stack can raise, read from the rendered rule files.

The runbook checker (every alert needs `runbooks/<AlertName>.md`), the GameDay
scenarios (expected alerts) and the tests all need the list of alert names; it is
read from the rules as rendered for a stack, so it can never drift from them:

    from monitoring.alerts import alert_names
    alert_names()            # ['AlertmanagerConfigReloadFailed', 'AlertmanagerDown', …]

or `python -m monitoring alerts` (one name a line; `--json` for details). This is the
one loader of the rule files: the runbook check reads them through it too (for another
tree, by passing that tree's `rules_dir`). What Prometheus has loaded at run time is a
different question, asked by `gameday.alerts.loaded_alert_names`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from infra.ansible_template import render_template
from infra.topology import Topology, load_stack
from monitoring.render import PROMETHEUS_DIR, template_context

#: Stack the alert list is read from when none is given.
DEFAULT_STACK = "lab"
RULES_DIR = PROMETHEUS_DIR / "rules"


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


#: Called with a rule file that cannot be rendered or parsed, and why; the file is
#: then left out. Without one, the error propagates.
OnUnreadable = Callable[[Path, Exception], None]


def rule_groups(topology: Topology | None = None, rules_dir: Path = RULES_DIR,
                on_unreadable: OnUnreadable | None = None) -> dict[str, list[dict[str, Any]]]:
    """Rendered rule file name → its rule groups, for a stack (lab by default).

    `rules_dir` is this checkout's `monitoring/prometheus/rules` unless another tree's
    is given (the runbook check of a throwaway tree).
    """
    context = template_context(topology or load_stack(DEFAULT_STACK))
    files: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(rules_dir.glob("*.yml.j2")):
        try:
            doc = yaml.safe_load(render_template(path, context)) or {}
        except (ValueError, yaml.YAMLError) as exc:
            if on_unreadable is None:
                raise
            on_unreadable(path, exc)
            continue
        files[path.name.removesuffix(".j2")] = doc.get("groups", [])
    return files


def alert_rules(topology: Topology | None = None, rules_dir: Path = RULES_DIR,
                on_unreadable: OnUnreadable | None = None) -> list[AlertRule]:
    """Every alerting rule, in file and group order (the one loader of the rule files)."""
    rules = []
    for rule_file, groups in rule_groups(topology, rules_dir, on_unreadable).items():
        for group in groups or []:
            for rule in group.get("rules", []) or []:
                if "alert" not in rule:
                    continue
                rules.append(AlertRule(
                    name=rule["alert"], group=group.get("name", ""), rule_file=rule_file,
                    expr=str(rule.get("expr", "")), for_=str(rule.get("for", "0s")),
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
