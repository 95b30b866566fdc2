"""Scenario schema: the catalog is valid; bad files fail with file:line: field."""

from __future__ import annotations

import pytest

from gameday.engine import run_gameday
from gameday.scenario import (
    SCENARIOS_DIR,
    check_against_topology,
    load_catalog,
    load_scenario,
)
from infra.yaml_source import ConfigError


def test_shipped_catalog_is_valid_and_fits_the_lab_stack(topology):
    catalog = load_catalog()
    assert len(catalog) >= 14
    for scenario in catalog.values():
        assert check_against_topology(scenario, topology) == [], scenario.id
        assert scenario.source.parent == SCENARIOS_DIR


def test_catalog_covers_every_fault_kind():
    from typing import get_args

    from gameday.fault_parameters import PARAMETERS, FaultKindName
    from gameday.faults import _MODULES

    kinds = {s.fault.kind for s in load_catalog().values()}
    assert kinds == set(PARAMETERS) == set(get_args(FaultKindName)) == set(_MODULES)
    assert {"process_crash", "process_hang", "service_stop", "network_partition",
            "packet_loss", "latency", "pool_exhaustion", "disk_full", "cpu_saturation",
            "load_surge", "long_transaction", "deadlocks", "redis_fill"} <= kinds


def test_good_file_loads_with_defaults(write_scenario, good_scenario_text):
    path = write_scenario("redis-down", good_scenario_text.format(id="redis-down"))
    scenario = load_scenario(path)
    assert scenario.load.users == 5
    assert scenario.stop_conditions.max_error_rate == 0.9
    assert scenario.runbook_path.name == "RedisDown.md"
    assert scenario.fault.params.signal == "TERM"


def _problems(path):
    with pytest.raises(ConfigError) as info:
        load_scenario(path)
    return info.value.problems


def test_wrong_type_names_file_line_and_field(write_scenario, good_scenario_text):
    text = good_scenario_text.format(id="bad").replace("users: 5", "users: many")
    path = write_scenario("bad", text)
    (problem,) = _problems(path)
    line = text.lstrip().splitlines().index("  users: many") + 1
    assert problem.startswith(f"{path}:{line}: load.users:")
    assert "integer" in problem


def test_unknown_field_is_pinned_to_its_line(write_scenario, good_scenario_text):
    text = good_scenario_text.format(id="bad").replace(
        "recovery: {deadline_s: 30}", "recovery: {deadline_s: 30}\nrecovry_typo: 3")
    path = write_scenario("bad", text)
    (problem,) = _problems(path)
    line = text.lstrip().splitlines().index("recovry_typo: 3") + 1
    assert problem == f"{path}:{line}: recovry_typo: unknown field"


def test_missing_required_section(write_scenario, good_scenario_text):
    text = good_scenario_text.format(id="bad").replace("recovery: {deadline_s: 30}\n", "")
    (problem,) = _problems(write_scenario("bad", text))
    assert "recovery: Field required" in problem


def test_bad_fault_parameter_is_reported_under_fault_parameters(write_scenario,
                                                                good_scenario_text):
    text = good_scenario_text.format(id="bad").replace(
        "  duration_s: 10", "  parameters:\n    signal: HUP\n  duration_s: 10")
    path = write_scenario("bad", text)
    (problem,) = _problems(path)
    line = text.lstrip().splitlines().index("    signal: HUP") + 1
    assert problem.startswith(f"{path}:{line}: fault.parameters.signal:")


def test_unknown_fault_parameter(write_scenario, good_scenario_text):
    text = good_scenario_text.format(id="bad").replace(
        "  duration_s: 10", "  parameters: {percent: 30}\n  duration_s: 10")
    (problem,) = _problems(write_scenario("bad", text))
    assert "fault.parameters.percent: unknown parameter for fault kind service_stop" in problem


def test_unknown_fault_kind_lists_the_known_ones(write_scenario, good_scenario_text):
    text = good_scenario_text.format(id="bad").replace("kind: service_stop", "kind: meteor")
    (problem,) = _problems(write_scenario("bad", text))
    assert "fault.kind:" in problem and "process_crash" in problem


def test_tolerance_key_must_fit_the_probe_kind(write_scenario, good_scenario_text):
    text = good_scenario_text.format(id="bad").replace(
        "tolerance: {status: [200]}", "tolerance: {status: [200], exit_code: 0}")
    path = write_scenario("bad", text)
    (problem,) = _problems(path)
    line = text.lstrip().splitlines().index(
        "      tolerance: {status: [200], exit_code: 0}") + 1
    assert problem.startswith(f"{path}:{line}: steady_state.probes[0].tolerance.exit_code:")
    assert "does not apply to a http probe" in problem


def test_probe_needs_exactly_one_kind(write_scenario, good_scenario_text):
    text = good_scenario_text.format(id="bad").replace(
        "      http: {service: nginx, path: /civicpulse/health/}",
        "      http: {service: nginx, path: /civicpulse/health/}\n"
        "      promql: {query: up}")
    (problem,) = _problems(write_scenario("bad", text))
    assert "steady_state.probes[0]: a probe needs exactly one of" in problem


def test_id_must_match_file_name(write_scenario, good_scenario_text):
    (problem,) = _problems(write_scenario("other", good_scenario_text.format(id="redis-down")))
    assert ":1: id: id 'redis-down' must match the file name (other.yaml)" in problem


def test_instantaneous_fault_takes_no_duration(write_scenario, good_scenario_text):
    text = good_scenario_text.format(id="bad").replace("kind: service_stop",
                                                       "kind: process_crash")
    (problem,) = _problems(write_scenario("bad", text))
    assert "fault.duration_s: process_crash is instantaneous" in problem


def test_invalid_yaml_names_the_line(write_scenario):
    path = write_scenario("bad", "id: bad\ntitle: [unclosed\n")
    (problem,) = _problems(path)
    assert problem.startswith(f"{path}:")
    assert "not valid YAML" in problem


def test_a_file_that_is_not_a_mapping_says_what_a_scenario_holds(write_scenario):
    path = write_scenario("list", "- id: list\n")
    assert _problems(path) == [f"{path}: a scenario must be a mapping with id, title, "
                               "hypothesis, steady_state, fault and recovery"]


def test_catalog_reports_every_bad_file_and_runs_nothing(write_scenario, good_scenario_text,
                                                        topology, tmp_path):
    write_scenario("ok", good_scenario_text.format(id="ok"))
    write_scenario("bad-one", good_scenario_text.format(id="bad-one").replace(
        "users: 5", "users: -1"))
    write_scenario("bad-two", good_scenario_text.format(id="bad-two").replace(
        "deadline_s: 15", "deadline_s: soon"))
    with pytest.raises(ConfigError) as info:
        load_catalog(tmp_path / "scenarios")
    problems = info.value.problems
    assert any("bad-one.yaml:" in p and "load.users" in p for p in problems)
    assert any("bad-two.yaml:" in p and "alerts[0].deadline_s" in p for p in problems)
    # run_gameday validates before anything else: no lock, no rollback log, no report.
    with pytest.raises(ConfigError):
        run_gameday(topology, scenarios_dir=tmp_path / "scenarios",
                    reports_dir=tmp_path / "reports")
    assert not (topology.state_dir / "gameday").exists()
    assert not (tmp_path / "reports").exists()


def test_topology_check_names_the_line(write_scenario, good_scenario_text, topology):
    text = good_scenario_text.format(id="bad").replace(
        "target: {service: redis}", "target: {service: app, host: db}")
    path = write_scenario("bad", text)
    scenario = load_scenario(path)
    (problem,) = check_against_topology(scenario, topology)
    line = text.lstrip().splitlines().index("  target: {service: app, host: db}") + 1
    assert problem.startswith(f"{path}:{line}: fault.target.host:")
    assert "app1, app2" in problem


def test_service_on_several_hosts_needs_a_choice(write_scenario, good_scenario_text, topology):
    text = good_scenario_text.format(id="bad").replace("target: {service: redis}",
                                                       "target: {service: app}")
    (problem,) = check_against_topology(load_scenario(write_scenario("bad", text)), topology)
    assert "say which with host, or all_instances: true" in problem
