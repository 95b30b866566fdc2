"""The checked-in Grafana dashboards are current, well formed, and query real metrics."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from infra.topology import load_stack
from monitoring import alerts, dashboards, metrics_catalog, validate
from monitoring.promql import grafana_to_promql, metric_names

GRAFANA = dashboards.DASHBOARDS_DIR.parent
CHECKED_IN = sorted(dashboards.DASHBOARDS_DIR.glob("*.json"))


def _models() -> dict[str, dict]:
    return {path.name: json.loads(path.read_text(encoding="utf-8")) for path in CHECKED_IN}


def test_the_four_dashboards_are_checked_in():
    assert [p.name for p in CHECKED_IN] == sorted(dashboards.DASHBOARDS)
    uids = {model["uid"] for model in _models().values()}
    assert uids == {"civicpulse-overview", "civicpulse-database", "civicpulse-redis",
                    "civicpulse-gameday"}


def test_checked_in_json_is_what_the_code_generates():
    pytest.importorskip("grafana_foundation_sdk")
    assert dashboards.stale() == [], "run `python -m monitoring dashboards` and commit"


def test_every_panel_queries_the_provisioned_prometheus():
    for name, model in _models().items():
        panels = [p for p in dashboards._all_panels(model) if p.get("type") != "row"]
        assert panels, name
        for panel in panels:
            where = f"{name}: {panel.get('title')}"
            assert panel.get("title"), where
            assert panel["datasource"] == {"type": "prometheus",
                                           "uid": dashboards.DATASOURCE_UID}, where
            assert panel.get("targets"), where
            for target in panel["targets"]:
                assert target["expr"].strip(), where
                assert target["datasource"]["uid"] == dashboards.DATASOURCE_UID, where
            assert len({t["refId"] for t in panel["targets"]}) == len(panel["targets"]), where


def test_queries_use_only_metrics_that_exist():
    known = metrics_catalog.known_metric_names()
    recorded = {rule["record"] for groups in alerts.rule_groups(load_stack("lab")).values()
                for group in groups for rule in group["rules"] if "record" in rule}
    for name, model in _models().items():
        for title, expr in dashboards.panel_queries(model):
            unknown = metric_names(expr) - known - recorded
            assert not unknown, f"{name}: {title} uses unknown metrics {sorted(unknown)}"


@pytest.mark.skipif(not Path(validate.PROMTOOL).is_file(), reason="promtool not installed")
def test_queries_are_valid_promql(tmp_path):
    # promtool 2.42 has no expression check; a rule file of recording rules is one.
    rules = []
    for name, model in _models().items():
        for i, (_title, expr) in enumerate(dashboards.panel_queries(model)):
            rules.append({"record": f"dashboard:{Path(name).stem}:{i}",
                          "expr": grafana_to_promql(expr)})
    path = tmp_path / "dashboards.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}),
                    encoding="utf-8")
    result = validate.run_tool("dashboards", [validate.PROMTOOL, "check", "rules", str(path)])
    assert result.ok, result.output


def test_gameday_dashboard_annotates_fault_windows_and_alerts():
    model = _models()["gameday.json"]
    annotations = {a["name"]: a for a in model["annotations"]["list"]}
    faults = annotations["GameDay faults"]
    assert faults["target"] == {"type": "tags", "tags": [dashboards.GAMEDAY_TAG],
                                "matchAny": True, "limit": 100}
    assert "ALERTS" in annotations["Firing alerts"]["expr"]


def test_provisioning_matches_the_dashboards():
    datasources = yaml.safe_load(
        (GRAFANA / "provisioning/datasources/prometheus.yml").read_text(encoding="utf-8"))
    (source,) = datasources["datasources"]
    assert source["uid"] == dashboards.DATASOURCE_UID and source["type"] == "prometheus"
    providers = yaml.safe_load(
        (GRAFANA / "provisioning/dashboards/civicpulse.yml").read_text(encoding="utf-8"))
    (provider,) = providers["providers"]
    assert provider["type"] == "file" and provider["options"]["path"]
