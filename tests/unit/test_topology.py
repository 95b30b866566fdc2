"""The stack config: every error names file, line and field; nothing is derived from a bad one."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from infra.inventory import build_inventory, stack_vars
from infra.topology import load_stack, stack_path
from infra.yaml_source import ConfigError

LAB = yaml.safe_load(stack_path("lab").read_text())


def write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "stack.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def errors_for(tmp_path: Path, mutate) -> str:
    data = copy.deepcopy(LAB)
    mutate(data)
    with pytest.raises(ConfigError) as exc:
        load_stack(write(tmp_path, data))
    return str(exc.value)


def test_lab_stack_is_valid_and_complete():
    topo = load_stack("lab")
    names = sorted({s.name for s in topo.services})
    assert names == sorted([
        "alertmanager", "app", "nginx", "nginx_exporter", "node_exporter", "pgbackrest",
        "pgbackrest_exporter", "pgbackrest_pg", "pgbouncer", "pgbouncer_exporter",
        "postgres_exporter", "postgresql", "prometheus", "redis", "redis_exporter",
    ])
    assert len(topo.instances("app")) == 2
    assert all(s.address.startswith("127.") for s in topo.services)
    assert topo.state_dir == Path("/var/lib/civicpulse/lab")
    assert topo.app_url == "http://127.0.10.10:8080/"


def test_unknown_service_names_file_line_and_field(tmp_path):
    msg = errors_for(tmp_path, lambda d: d["hosts"]["app1"]["services"].append("apache"))
    assert "stack.yaml:" in msg
    assert "hosts.app1.services[1]" in msg
    assert "unknown service 'apache'" in msg
    line = int(msg.split("stack.yaml:")[1].split(":")[0])
    text = (tmp_path / "stack.yaml").read_text().splitlines()
    assert "apache" in text[line - 1]


def test_two_services_on_one_address_and_port(tmp_path):
    def clash(d):
        d["hosts"]["app1"]["services"] = [{"name": "app", "port": 9000},
                                          {"name": "node_exporter", "port": 9000}]
    msg = errors_for(tmp_path, clash)
    assert "127.0.10.21:9000" in msg and "already uses" in msg


def test_app_metrics_port_is_a_listener_of_its_own(tmp_path):
    topo = load_stack("lab")
    app = topo.instances("app")[0]
    assert app.metrics_port == 8001 and app.metrics_endpoint == f"{app.address}:8001"
    assert topo.one("redis_exporter").metrics_port == topo.one("redis_exporter").port

    def clash(d):
        d["hosts"]["app1"]["services"] = ["app", {"name": "node_exporter", "port": 8001}]
    msg = errors_for(tmp_path, clash)
    assert "127.0.10.21:8001 (port)" in msg and "app1/app already uses" in msg


def test_metrics_port_only_where_the_service_has_one(tmp_path):
    def misuse(d):
        d["hosts"]["cache"]["services"] = [{"name": "redis", "metrics_port": 9999}]
    msg = errors_for(tmp_path, misuse)
    assert "hosts.cache.services[0].metrics_port: redis has no metrics port" in msg


def test_data_volume_too_small_is_refused(tmp_path):
    def tiny(d):
        d.setdefault("sizing", {}).setdefault("postgresql", {})["data_volume_mb"] = 10
    msg = errors_for(tmp_path, tiny)
    assert "sizing.postgresql.data_volume_mb" in msg


# One mistake in the lab stack and the words its error must contain.
BAD_STACKS = {
    "address outside loopback": (lambda d: d["hosts"]["db"].update(address="10.0.0.5"),
                                 ["hosts.db.address", "outside 127.0.0.0/8"]),
    "address not an IP": (lambda d: d["hosts"]["db"].update(address="db.local"),
                          ["hosts.db.address", "not an IP address"]),
    "no host for a required service": (lambda d: d["hosts"].pop("db"),
                                       ["no host runs postgresql"]),
    "bad size": (lambda d: d["sizing"]["app"].update(workers=0),
                 ["sizing.app.workers", "greater than or equal to 1"]),
    "unknown field": (lambda d: d["sizing"]["redis"].update(maxmemory="1gb"),
                      ["sizing.redis.maxmemory", "unknown field"]),
    "duplicate address": (lambda d: d["hosts"]["app2"].update(address="127.0.10.21"),
                          ["hosts.app2.address", "already host 'app1'"]),
    "singleton service twice": (lambda d: d["hosts"]["app2"]["services"].append("redis"),
                                ["redis runs on 2 hosts"]),
}


@pytest.mark.parametrize("case", BAD_STACKS)
def test_a_bad_stack_is_refused_with_the_field_and_the_problem(tmp_path, case):
    mutate, expected = BAD_STACKS[case]
    msg = errors_for(tmp_path, mutate)
    for words in expected:
        assert words in msg


def test_a_stack_file_that_is_not_a_mapping_says_what_it_must_hold(tmp_path):
    path = tmp_path / "stack.yaml"
    path.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="must be a mapping with 'stack' and 'hosts'"):
        load_stack(path)


def test_every_problem_is_reported_at_once(tmp_path):
    def many(d):
        d["hosts"]["db"]["address"] = "192.168.1.1"
        d["hosts"]["app1"]["services"].append("apache")
    msg = errors_for(tmp_path, many)
    assert "outside 127.0.0.0/8" in msg


def test_unknown_stack_name_lists_known_ones():
    with pytest.raises(ConfigError) as exc:
        load_stack("nope")
    assert "no stack named 'nope'" in str(exc.value) and "lab" in str(exc.value)


def test_invalid_yaml_names_the_line(tmp_path):
    path = tmp_path / "stack.yaml"
    path.write_text("stack: lab\nhosts: [unclosed\n")
    with pytest.raises(ConfigError) as exc:
        load_stack(path)
    assert "stack.yaml:" in str(exc.value) and "not valid YAML" in str(exc.value)


def test_inventory_is_derived_from_the_topology():
    topo = load_stack("lab")
    inv = build_inventory(topo)["all"]
    assert set(inv["hosts"]) == {h.name for h in topo.hosts}
    assert set(inv["children"]["app"]["hosts"]) == {"app1", "app2"}
    app1 = inv["hosts"]["app1"]
    assert app1["app_address"] == "127.0.10.21" and app1["app_port"] == 8000
    assert app1["app_workers"] == topo.sizing.app.workers
    assert inv["hosts"]["cache"]["redis_maxmemory_mb"] == 128
    endpoints = inv["vars"]["cp_endpoints"]
    assert [e["address"] for e in endpoints["app"]] == ["127.0.10.21", "127.0.10.22"]
    # exactly one host per machine does machine-wide work such as apt
    assert sum(1 for h in inv["hosts"].values() if h["cp_machine_primary"]) == 1


def test_a_third_app_host_is_one_line(tmp_path):
    data = copy.deepcopy(LAB)
    data["hosts"]["app3"] = {"address": "127.0.10.23", "services": ["app"]}
    topo = load_stack(write(tmp_path, data))
    vars_ = stack_vars(topo)
    assert len(vars_["cp_endpoints"]["app"]) == 3
    assert "app3" in build_inventory(topo)["all"]["children"]["app"]["hosts"]


def test_state_dirs_of_two_stacks_do_not_overlap(tmp_path):
    data = copy.deepcopy(LAB)
    data["stack"] = "other"
    for i, host in enumerate(data["hosts"].values()):
        host["address"] = f"127.0.30.{i + 10}"
    other = load_stack(write(tmp_path, data))
    lab = load_stack("lab")
    assert other.state_dir != lab.state_dir
    assert not {s.endpoint for s in other.services} & {s.endpoint for s in lab.services}


def test_each_host_gets_its_roles_in_dependency_order():
    inventory = build_inventory(load_stack("lab"))
    hosts = inventory["all"]["hosts"]
    assert hosts["db"]["cp_roles"] == ["postgresql", "pgbackrest", "exporters"]
    assert hosts["backup"]["cp_roles"] == ["pgbackrest", "exporters"]
    assert hosts["monitor"]["cp_roles"] == ["exporters", "alertmanager", "prometheus"]
    assert hosts["edge"]["cp_roles"] == ["nginx", "exporters"]
    assert hosts["app1"]["cp_roles"] == ["app"]
    # Every role a host is given exists under playbooks/roles.
    roles_dir = Path(__file__).resolve().parents[2] / "playbooks" / "roles"
    for host in hosts.values():
        assert all((roles_dir / role / "tasks" / "main.yml").is_file() for role in host["cp_roles"])
