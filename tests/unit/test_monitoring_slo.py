"""The SLO burn-rate rules are generated from the spec, and the golden file is current."""

from __future__ import annotations

import yaml

from infra.topology import load_stack
from monitoring import render, slo_rules


def test_golden_rules_match_the_spec():
    specs = slo_rules.spec_paths()
    assert specs, "no SLO spec in monitoring/slo/"
    for spec in specs:
        golden = slo_rules.output_path(spec)
        assert golden.is_file(), f"{golden} missing: run `python -m monitoring slo`"
        assert golden.read_text(encoding="utf-8") == slo_rules.generate(spec), (
            f"{golden} is stale: run `python -m monitoring slo` and commit the diff")


def test_the_policy_is_the_workbook_one():
    assert [(w.short, w.long, w.factor) for w in slo_rules.PAGE_WINDOWS] == [
        ("5m", "1h", 14.4), ("30m", "6h", 6)]
    assert [(w.short, w.long, w.factor) for w in slo_rules.TICKET_WINDOWS] == [
        ("2h", "1d", 3), ("6h", "3d", 1)]


def _rendered_groups() -> dict[str, dict]:
    spec = slo_rules.spec_paths()[0]
    text = render.render_template(slo_rules.output_path(spec),
                                  render.template_context(load_stack("lab")))
    return {group["name"]: group for group in yaml.safe_load(text)["groups"]}


def test_every_window_of_the_policy_is_recorded():
    groups = _rendered_groups()
    recorded = {rule["labels"]["window"] for group in groups.values() for rule in group["rules"]
                if rule.get("record", "").startswith("slo:sli_error:ratio_rate")}
    windows = {w for pair in slo_rules.PAGE_WINDOWS + slo_rules.TICKET_WINDOWS
               for w in (pair.short, pair.long)}
    assert windows <= recorded
    # Long windows come from recorded rates in a slower group, not from raw counters.
    long_group = next(g for g in groups.values() if g["name"].endswith("-sli-long"))
    assert long_group["interval"] == slo_rules.DERIVED_INTERVAL
    for rule in long_group["rules"]:
        assert "civicpulse_http_requests_total" not in rule["expr"]


def test_alerts_compare_against_the_budget_of_the_stack():
    groups = _rendered_groups()
    alert_rules = {r["alert"]: r for g in groups.values() for r in g["rules"] if "alert" in r}
    page = alert_rules["AppAvailabilityBurnRatePage"]["expr"]
    ticket = alert_rules["AppAvailabilityBurnRateTicket"]["expr"]
    assert "ratio_rate5m" in page and "ratio_rate1h" in page and "(14.4 * 0.001)" in page
    assert "ratio_rate30m" in page and "ratio_rate6h" in page and "(6 * 0.001)" in page
    assert "ratio_rate2h" in ticket and "ratio_rate1d" in ticket and "(3 * 0.001)" in ticket
    assert "ratio_rate6h" in ticket and "ratio_rate3d" in ticket and "(1 * 0.001)" in ticket
    assert alert_rules["AppAvailabilityBurnRatePage"]["labels"]["severity"] == "critical"
    assert alert_rules["AppAvailabilityBurnRateTicket"]["labels"]["severity"] == "warning"
