"""Every alert is complete, unit-tested both ways, and uses metrics that exist."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import yaml

from infra.topology import REPO_ROOT, load_stack
from monitoring import alerts, metrics_catalog, render
from monitoring.promql import metric_names

LAB = load_stack("lab")
RULES = alerts.alert_rules(LAB)

#: What the issue asks for, at least: one alert per component failure.
REQUIRED = {
    "PostgresqlDown", "PostgresqlRestarted", "PostgresqlTooManyConnections",
    "PostgresqlDeadlocks", "PostgresqlLongTransaction",
    "PgbouncerDown", "PgbouncerClientsWaiting", "PgbouncerPoolSaturated",
    "PgbouncerMaxClientConnNearLimit",
    "RedisDown", "RedisMemoryNearMaxmemory", "RedisRejectedConnections",
    "AppHostDown", "AppAllHostsDown", "AppHighErrorRatio", "AppHighLatencyP99",
    "AppDatabaseErrors", "AppCacheCircuitOpen", "AppAuditWriteFailures",
    "NginxDown", "TargetDown", "Watchdog", "AlertmanagerDown",
    "PrometheusConfigReloadFailed", "AppAvailabilityBurnRatePage",
    "AppAvailabilityBurnRateTicket",
}


def test_the_required_alerts_exist_once_each():
    names = [rule.name for rule in RULES]
    assert REQUIRED <= set(names)
    assert len(names) == len(set(names)), "an alert name is used twice"
    assert alerts.alert_names(LAB) == sorted(names)


def test_every_alert_has_severity_summary_description_and_runbook():
    for rule in RULES:
        assert rule.severity in {"critical", "warning", "none"}, rule.name
        assert rule.annotations.get("summary"), rule.name
        assert rule.annotations.get("description"), rule.name
        assert rule.runbook_url == f"runbooks/{rule.name}.md" == alerts.runbook_path(rule.name)
        assert re.fullmatch(r"[A-Z][A-Za-z0-9]+", rule.name), rule.name
    assert {r.name for r in RULES if r.severity == "none"} == {"Watchdog"}


def test_alerts_carry_the_service_label_inhibition_matches_on():
    for rule in RULES:
        if rule.name == "TargetDown":
            continue  # keeps the scraped target's own `service` label
        assert rule.labels.get("service"), rule.name


def _promtool_cases() -> tuple[dict[str, int], dict[str, int]]:
    """Per alert name: how many promtool cases expect it to fire, and to stay quiet."""
    fires: dict[str, int] = defaultdict(int)
    quiet: dict[str, int] = defaultdict(int)
    for item in render.render_all(LAB):
        if item.relative.parent != Path("prometheus/tests"):
            continue
        for group in yaml.safe_load(item.text)["tests"]:
            for case in group.get("alert_rule_test", []):
                target = fires if case.get("exp_alerts") else quiet
                target[case["alertname"]] += 1
    return fires, quiet


def test_every_alert_has_a_firing_and_a_quiet_promtool_case():
    fires, quiet = _promtool_cases()
    for rule in RULES:
        assert fires[rule.name] >= 1, f"no promtool case makes {rule.name} fire"
        if rule.name != "Watchdog":  # always firing by design
            assert quiet[rule.name] >= 1, f"no promtool case keeps {rule.name} quiet"


def test_firing_cases_assert_every_annotation():
    for item in render.render_all(LAB):
        if item.relative.parent != Path("prometheus/tests"):
            continue
        for group in yaml.safe_load(item.text)["tests"]:
            for case in group.get("alert_rule_test", []):
                for alert in case.get("exp_alerts") or []:
                    assert set(alert["exp_annotations"]) == {
                        "summary", "description", "runbook_url"}, (item.relative, case)
                    assert "severity" in alert["exp_labels"], (item.relative, case)


def test_rules_use_only_metrics_that_exist():
    known = metrics_catalog.known_metric_names()
    recorded = set()
    expressions = []
    for groups in alerts.rule_groups(LAB).values():
        for group in groups:
            for rule in group["rules"]:
                if "record" in rule:
                    recorded.add(rule["record"])
                expressions.append((rule.get("alert") or rule["record"], rule["expr"]))
    for name, expr in expressions:
        unknown = metric_names(str(expr)) - known - recorded
        assert not unknown, f"{name} uses unknown metrics {sorted(unknown)}"


def test_cli_lists_the_alert_names():
    proc = subprocess.run([sys.executable, "-m", "monitoring", "alerts"], cwd=REPO_ROOT,
                          capture_output=True, text=True, check=True)
    assert proc.stdout.split() == alerts.alert_names(LAB)
    proc = subprocess.run([sys.executable, "-m", "monitoring", "alerts", "--json"],
                          cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    details = {a["name"]: a for a in json.loads(proc.stdout)}
    assert details["RedisDown"]["severity"] == "critical"
    assert details["RedisDown"]["runbook_url"] == "runbooks/RedisDown.md"
