"""Dry-run checks of the catalog against the rules, promtool and the runbooks."""

from __future__ import annotations

import yaml

from gameday.catalog_check import check_catalog, promql_parse_error
from gameday.scenario import load_catalog
from infra.topology import REPO_ROOT, load_stack

SCENARIOS = REPO_ROOT / "gameday" / "scenarios"


def test_the_shipped_catalog_passes_the_dry_run_checks():
    check = check_catalog(list(load_catalog(SCENARIOS).values()), load_stack("lab"))
    assert check.errors == []
    assert check.warnings == []


def test_promtool_parses_probe_queries():
    assert promql_parse_error('sum(rate(civicpulse_http_requests_total[1m]))') is None
    problem = promql_parse_error("sum(rate(civicpulse_http_requests_total[1m])")
    assert problem and "parse" in problem


def broken_copy(tmp_path, change):
    data = yaml.safe_load((SCENARIOS / "redis-down.yaml").read_text())
    change(data)
    (tmp_path / "redis-down.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return list(load_catalog(tmp_path).values())


def test_an_alert_no_rule_defines_is_an_error_with_file_and_line(tmp_path):
    def rename(data):
        data["alerts"][0]["name"] = "RedisDwon"

    check = check_catalog(broken_copy(tmp_path, rename), load_stack("lab"))
    assert len(check.errors) == 1
    assert check.errors[0].startswith(f"{tmp_path / 'redis-down.yaml'}:")
    assert "alerts[0].name: no alert rule defines RedisDwon" in check.errors[0]


def test_a_probe_that_does_not_parse_is_an_error_and_an_unknown_metric_a_warning(tmp_path):
    def probes(data):
        data["steady_state"]["probes"] += [
            {"name": "broken", "promql": {"query": "sum(up"}, "tolerance": {"min": 1}},
            {"name": "typo", "promql": {"query": "sum(civicpulse_http_request_total)"},
             "tolerance": {"min": 0, "if_empty": "zero"}},
        ]

    check = check_catalog(broken_copy(tmp_path, probes), load_stack("lab"))
    assert len(check.errors) == 1 and "probes[1].promql.query: does not parse" in check.errors[0]
    assert len(check.warnings) == 1
    assert "probes[2].promql.query: no target of ours is known to export " \
           "civicpulse_http_request_total" in check.warnings[0]


def test_a_runbook_step_the_runbook_lacks_is_an_error(tmp_path):
    runbook = tmp_path / "Thin.md"
    runbook.write_text("# Thin\n\n```sh step=verify\ntrue\n```\n")

    def steps(data):
        data["runbook"]["path"] = str(runbook)
        data["runbook"]["steps"] = ["diagnose", "verify"]

    check = check_catalog(broken_copy(tmp_path, steps), load_stack("lab"))
    assert len(check.errors) == 1
    assert "runbook.steps[0]: Thin.md has no `step=diagnose` block" in check.errors[0]
