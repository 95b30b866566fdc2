"""The monitoring templates render from the stack config, as the roles render them."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from infra.topology import load_stack
from monitoring import render

LAB = load_stack("lab")


def _stack_file(tmp_path: Path, **monitoring: object) -> Path:
    """The lab stack with some monitoring settings changed (e.g. a prod profile)."""
    data = yaml.safe_load(LAB.source.read_text(encoding="utf-8"))
    data["stack"] = "montest"
    data["monitoring"].update(monitoring)
    path = tmp_path / "montest.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def _rendered(topology=LAB) -> dict[str, str]:
    return {str(item.relative): item.text for item in render.render_all(topology)}


def test_every_template_renders_for_lab():
    files = _rendered()
    assert "prometheus/prometheus.yml" in files
    assert "alertmanager/alertmanager.yml" in files
    rules = [name for name in files if name.startswith("prometheus/rules/")]
    tests = [name for name in files if name.startswith("prometheus/tests/")]
    assert len(rules) >= 8 and len(tests) == len(rules)
    for name, text in files.items():
        assert text.startswith("---\n"), f"{name} does not start with ---"
        assert "[%" not in text and "%]" not in text, f"{name} kept a Jinja variable"
        yaml.safe_load(text)


def test_scrape_jobs_targets_and_host_labels_come_from_the_stack():
    config = yaml.safe_load(_rendered()["prometheus/prometheus.yml"])
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"app", "prometheus", "alertmanager", "node", "postgres", "pgbouncer",
                         "redis", "nginx", "pgbackrest"}
    targets = {(job, target, group["labels"]["host"], group["labels"]["service"])
               for job, cfg in jobs.items() for group in cfg["static_configs"]
               for target in group["targets"]}
    for svc in LAB.services:
        if svc.kind.metrics_path is None:
            continue
        job = svc.name.removesuffix("_exporter")
        # An exporter speaks for the host of the service it exports.
        host = LAB.one(svc.kind.exports).host if svc.kind.exports else svc.host
        service = svc.kind.exports or job
        assert (job, svc.metrics_endpoint, host, service) in targets
    assert {t[2] for t in targets if t[0] == "app"} == {"app1", "app2"}
    # The app is scraped on its Gunicorn master's metrics listener, never on the port
    # its (possibly all busy) workers serve requests on.
    app_targets = {t[1] for t in targets if t[0] == "app"}
    assert app_targets == {f"{s.address}:{s.metrics_port}" for s in LAB.instances("app")}
    assert not any(s.endpoint in app_targets for s in LAB.instances("app"))
    alertmanagers = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert alertmanagers == [LAB.one("alertmanager").endpoint]


def test_intervals_follow_the_profile(tmp_path):
    lab = yaml.safe_load(_rendered()["prometheus/prometheus.yml"])["global"]
    assert (lab["scrape_interval"], lab["evaluation_interval"], lab["scrape_timeout"]) == (
        "1s", "1s", "1s")
    prod = load_stack(_stack_file(tmp_path, profile="prod", scrape_interval_s=15,
                                  evaluation_interval_s=15, alert_for_s=60))
    files = _rendered(prod)
    glob = yaml.safe_load(files["prometheus/prometheus.yml"])["global"]
    assert (glob["scrape_interval"], glob["evaluation_interval"], glob["scrape_timeout"]) == (
        "15s", "15s", "10s")
    app_rules = yaml.safe_load(files["prometheus/rules/app.yml"])["groups"][0]["rules"]
    down = next(r for r in app_rules if r["alert"] == "AppHostDown")
    assert down["for"] == "60s" and "[45s]" in down["expr"]
    ratio = next(r for r in app_rules if r["alert"] == "AppHighErrorRatio")
    assert "[60s]" in ratio["expr"]


def test_thresholds_come_from_the_stack(tmp_path):
    topology = load_stack(_stack_file(tmp_path, error_ratio=0.02, p99_latency_s=0.5,
                                      slo_availability=0.995))
    files = _rendered(topology)
    rules = {r["alert"]: r for r in yaml.safe_load(files["prometheus/rules/app.yml"])["groups"][0]
             ["rules"]}
    assert rules["AppHighErrorRatio"]["expr"].rstrip().endswith("> 0.02")
    assert rules["AppHighLatencyP99"]["expr"].rstrip().endswith("> 0.5")
    slo = files["prometheus/rules/slo-app.yml"]
    assert "vector(0.995)" in slo and "vector(0.005)" in slo and "(14.4 * 0.005)" in slo


def test_alertmanager_routes_by_severity_to_the_gameday_webhook():
    config = yaml.safe_load(_rendered()["alertmanager/alertmanager.yml"])
    route = config["route"]
    timings = LAB.monitoring.alertmanager
    assert route["group_wait"] == f"{timings.group_wait_s}s"
    assert route["group_interval"] == f"{timings.group_interval_s}s"
    assert route["repeat_interval"] == f"{timings.repeat_interval_s}s"
    assert {tuple(r["matchers"]): r["receiver"] for r in route["routes"]} == {
        ('alertname="Watchdog"',): "watchdog",
        ('severity="critical"',): "page",
        ('severity="warning"',): "ticket",
    }
    for receiver in config["receivers"]:
        (hook,) = receiver["webhook_configs"]
        assert hook["url"] == f"http://{LAB.webhook_endpoint}/alerts"
        assert hook["send_resolved"] is True
    (inhibit,) = config["inhibit_rules"]
    assert inhibit["source_matchers"] == ['severity="critical"']
    assert inhibit["target_matchers"] == ['severity="warning"']
    assert set(inhibit["equal"]) == {"service", "host", "slo"}


def test_override_line_is_parsed_like_ansible(tmp_path):
    template = tmp_path / "t.yml.j2"
    template.write_text("#jinja2:variable_start_string:'[%', variable_end_string:'%]'\n"
                        "a: [% x %] {{ $labels.host }}\n", encoding="utf-8")
    assert render.render_template(template, {"x": 1}) == "a: 1 {{ $labels.host }}\n"
    template.write_text("#jinja2:no_such_option:'x'\nb\n", encoding="utf-8")
    with pytest.raises(ValueError, match="no_such_option"):
        render.render_template(template, {})


def test_undefined_variables_fail_with_the_template_name(tmp_path):
    template = tmp_path / "t.yml.j2"
    template.write_text("---\na: {{ missing }}\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"t\.yml\.j2"):
        render.render_template(template, {})
