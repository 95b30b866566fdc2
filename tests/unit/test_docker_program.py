"""The docker target's Pulumi program, run under Pulumi's own mocks (no CLI, no engine).

Each test runs `define_stack` inside `@pulumi.runtime.test` with a mock that records
every resource registration as the engine would receive it: `args.inputs` keys are
the camelCase wire names, nested args arrive as dicts, and secret values arrive
wrapped in Pulumi's secret signature, which is how these tests tell that a value is
a secret.
"""

from __future__ import annotations

import asyncio
import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml
from pulumi.runtime import rpc
from pulumi.runtime import settings as pulumi_settings


class RecordingMocks(pulumi.runtime.Mocks):
    """Echo inputs back as outputs; invent ids, image ids and random passwords."""

    def __init__(self) -> None:
        self.resources: list[pulumi.runtime.MockResourceArgs] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
        self.resources.append(args)
        outputs = dict(args.inputs)
        if args.typ == "random:index/randomPassword:RandomPassword":
            outputs["result"] = secret_value(args.name)
        if args.typ == "docker:index/remoteImage:RemoteImage":
            outputs["imageId"] = f"sha256:{args.inputs['name']}"
        return f"{args.name}-id", outputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict:
        return {}


def install_mocks(mocks: RecordingMocks, stack: str) -> asyncio.AbstractEventLoop:
    """Mocks on an event loop and a root stack resource of their own.

    Other tests of the session (asyncio.run in the GameDay suite) close or replace
    the thread's event loop, and Pulumi's root resource holds futures of the loop it
    was created on: each run gets its own, closed afterwards like asyncio.run does.
    """
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    pulumi_settings.ROOT.set(None)
    pulumi.runtime.set_mocks(mocks, project="civicpulse", stack=stack, preview=False)
    drain(loop)  # the new root stack's own registration
    return loop


def drain(loop: asyncio.AbstractEventLoop) -> None:
    pending = asyncio.all_tasks(loop)
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))


def close(loop: asyncio.AbstractEventLoop) -> None:
    drain(loop)
    loop.close()
    asyncio.set_event_loop(None)


# Pitfall: the mocks must be in place before the program module is imported.
close(install_mocks(RecordingMocks(), "test"))

from infra.catalog import SERVICE_KINDS  # noqa: E402
from infra.docker import program  # noqa: E402
from infra.docker.layout import layout_for  # noqa: E402
from infra.docker.services import (  # noqa: E402
    APP_DOCKERFILE,
    APP_IMAGE,
    GRAFANA_IMAGE,
    GRAFANA_PORT,
    SCRATCH_IMAGES,
)
from infra.inventory import build_inventory  # noqa: E402
from infra.topology import Topology, load_stack, stack_path  # noqa: E402
from infra.workload import workload_dir  # noqa: E402

CONTAINER = "docker:index/container:Container"
LAB = yaml.safe_load(stack_path("lab").read_text())


def secret_value(resource_name: str) -> str:
    return f"MockSecret{resource_name.removeprefix('secret-').replace('-', '')}Value"


def unwrap(value: Any) -> tuple[Any, bool]:
    """A wire value without Pulumi's secret wrappers, and whether it had any."""
    if isinstance(value, dict):
        if value.get(rpc._special_sig_key) == rpc._special_secret_sig:
            inner, _ = unwrap(value["value"])
            return inner, True
        items = {k: unwrap(v) for k, v in value.items()}
        return {k: v for k, (v, _) in items.items()}, any(s for _, s in items.values())
    if isinstance(value, list):
        items = [unwrap(v) for v in value]
        return [v for v, _ in items], any(s for _, s in items)
    return value, False


def plain_parts(value: Any) -> list[str]:
    """Every string of a wire value outside secret wrappers."""
    if isinstance(value, dict):
        if value.get(rpc._special_sig_key) == rpc._special_secret_sig:
            return []
        return [s for v in value.values() for s in plain_parts(v)]
    if isinstance(value, list):
        return [s for v in value for s in plain_parts(v)]
    return [value] if isinstance(value, str) else []


@dataclass
class Run:
    topology: Topology
    stack: program.DockerStack
    resources: list[pulumi.runtime.MockResourceArgs]
    #: `Output.is_secret()` of every uploaded file that is an Output and of every
    #: secret, awaited inside the Pulumi test run ("file:<host>/<service><path>").
    secret_flags: dict[str, bool]

    def of_type(self, typ: str) -> list[pulumi.runtime.MockResourceArgs]:
        return [r for r in self.resources if r.typ == typ]

    def container(self, name: str) -> dict:
        found = [r for r in self.of_type(CONTAINER) if r.inputs.get("name") == name]
        assert len(found) == 1, f"{len(found)} containers named {name}"
        return found[0].inputs

    def service_containers(self) -> dict[tuple[str, str], dict]:
        layout = self.stack.plan.layout
        return {key: self.container(layout.container(*key)) for key in self.stack.containers}

    def sandbox(self, host: str) -> dict:
        return self.container(self.stack.plan.layout.hosts[host].sandbox)


def run_program(topology: Topology, publish_monitoring: bool | None = None,
                config: dict[str, str] | None = None) -> Run:
    mocks = RecordingMocks()
    loop = install_mocks(mocks, topology.stack)
    pulumi.runtime.set_all_config(config or {})
    holder: dict[str, Any] = {}

    @pulumi.runtime.test
    def define() -> pulumi.Output:
        stack = holder["stack"] = program.define_stack(topology, publish_monitoring)
        outputs = {f"file:{h}/{s}{path}": o for (h, s, path), o in stack.files.items()
                   if isinstance(o, pulumi.Output)}
        outputs.update({f"secret:{name}": o for name, o in stack.secrets.items()})
        # Without the decorator (and outside apply) nothing here would be awaited.
        flags = pulumi.Output.all(**{k: pulumi.Output.from_input(o.is_secret())
                                     for k, o in outputs.items()})
        return pulumi.Output.all(flags.apply(lambda f: holder.__setitem__("flags", f)),
                                 *[c.id for c in stack.containers.values()])

    try:
        define()
    finally:
        pulumi.runtime.set_all_config({})
        close(loop)
    return Run(topology, holder["stack"], mocks.resources, holder["flags"])


def stack_file(tmp_path: Path, mutate: Any = None, name: str = "lab") -> Topology:
    data = copy.deepcopy(LAB)
    data["stack"] = name
    if mutate:
        mutate(data)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return load_stack(path)


@pytest.fixture(scope="module")
def lab() -> Run:
    return run_program(load_stack("lab"))


def test_every_service_becomes_one_container_with_its_pinned_image(lab):
    images = {r.inputs["name"]: f"sha256:{r.inputs['name']}"
              for r in lab.of_type("docker:index/remoteImage:RemoteImage")}
    containers = lab.service_containers()
    expected = {(s.host, s.name) for s in lab.topology.services} | {("monitor", "grafana")}
    assert set(containers) == expected
    for (host, service), inputs in containers.items():
        if service == "grafana":
            assert inputs["image"] == images[GRAFANA_IMAGE]
            continue
        ref = SERVICE_KINDS[service].docker_image
        if ref == APP_IMAGE:
            assert inputs["image"] == APP_IMAGE, f"{host}/{service} runs the built image"
        else:
            assert ":" in ref and not ref.endswith(":latest"), f"{ref} is not pinned"
            assert inputs["image"] == images[ref], f"{host}/{service}"
    built = lab.of_type("docker:index/image:Image")
    assert len(built) == 1
    assert built[0].inputs["imageName"] == APP_IMAGE
    assert built[0].inputs["skipPush"] is True
    build = built[0].inputs["build"]
    assert build["context"] == str(workload_dir(lab.topology))
    assert build["dockerfile"] == str(APP_DOCKERFILE)
    assert "gunicorn" in build["args"]["REQUIREMENTS"]


def test_containers_join_their_hosts_namespace_which_has_the_alias_and_fixed_address(lab):
    layout = lab.stack.plan.layout
    network = lab.of_type("docker:index/network:Network")
    assert len(network) == 1
    assert network[0].inputs["name"] == "cp-lab"
    assert network[0].inputs["ipamConfigs"] == [{"subnet": "172.16.10.0/24",
                                                 "gateway": "172.16.10.1"}]
    for host in lab.topology.hosts:
        sandbox = lab.sandbox(host.name)
        assert sandbox["networksAdvanced"] == [{
            "name": "cp-lab", "aliases": [host.name],
            "ipv4Address": "172.16." + ".".join(host.address.split(".")[2:])}]
        assert sandbox["restart"] == "unless-stopped"
    for (host, service), inputs in lab.service_containers().items():
        assert inputs["networkMode"] == f"container:sandbox-{host}-id", f"{host}/{service}"
        assert "networksAdvanced" not in inputs
        assert "ports" not in inputs  # a joined container cannot publish ports
        assert inputs["name"] == layout.container(host, service)


def test_every_container_has_a_health_check_restart_policy_and_limits(lab):
    no_shell = []
    for (host, service), inputs in lab.service_containers().items():
        assert inputs["restart"] == "unless-stopped"
        assert 0 < inputs["memory"] == inputs["memorySwap"], f"{host}/{service}: no swap"
        assert 0 < float(inputs["cpus"]) <= 1.0, f"{host}/{service}"
        assert inputs["securityOpts"] == ["no-new-privileges:true"]
        check = inputs.get("healthcheck")
        image = (SERVICE_KINDS[service].docker_image if service in SERVICE_KINDS
                 else GRAFANA_IMAGE)
        if check is None:
            no_shell.append(service)
            assert image.startswith(SCRATCH_IMAGES), f"{host}/{service} has no health check"
            continue
        assert check["tests"][0] in ("CMD", "CMD-SHELL")
        port = lab.stack.plan.container(host, service).port
        assert str(port) in " ".join(check["tests"]), f"{host}/{service} checks its own port"
        assert check["retries"] >= 3
        if service == "app":
            # ... and the Gunicorn master's metrics listener, which Prometheus scrapes.
            assert "http://127.0.0.1:8001/metrics" in " ".join(check["tests"]), host
    # Scratch images have no shell to run a check in; Prometheus' up{} covers them.
    assert sorted(no_shell) == ["nginx_exporter"]
    pg = lab.container("cp-lab-db-postgresql")
    assert pg["shmSize"] == 256
    assert pg["memory"] >= lab.topology.sizing.postgresql.shared_buffers_mb
    redis = lab.container("cp-lab-cache-redis")
    assert redis["memory"] > lab.topology.sizing.redis.maxmemory_mb


def test_data_lives_in_named_volumes(lab):
    volumes = {r.inputs["name"] for r in lab.of_type("docker:index/volume:Volume")}
    mounts = {
        ("db", "postgresql"): "/var/lib/postgresql/data",
        ("cache", "redis"): "/data",
        ("monitor", "prometheus"): "/prometheus",
        ("monitor", "grafana"): "/var/lib/grafana",
    }
    assert volumes == {f"cp-lab-{h}-{s}-data" for h, s in mounts}
    containers = lab.service_containers()
    for (host, service), path in mounts.items():
        assert containers[(host, service)]["volumes"] == [
            {"volumeName": f"cp-lab-{host}-{service}-data", "containerPath": path}]
    stateless = [k for k, v in containers.items() if "volumes" in v]
    assert sorted(stateless) == sorted(mounts)


def published(run: Run) -> set[tuple[str, int, int, str]]:
    ports = set()
    for container in run.of_type(CONTAINER):
        for port in container.inputs.get("ports", []):
            ports.add((container.inputs["name"], port["internal"], port["external"],
                       port["ip"]))
    return ports


def test_only_nginx_is_published_on_its_stack_address_by_default(lab):
    assert published(lab) == {("cp-lab-edge", 8080, 8080, "127.0.10.10")}
    # The same URL as on the local target.
    assert lab.topology.app_url == "http://127.0.10.10:8080/"


def test_publish_monitoring_pulumi_config_adds_prometheus_and_grafana():
    run = run_program(load_stack("lab"), config={"civicpulse:publish_monitoring": "true"})
    assert published(run) == {("cp-lab-edge", 8080, 8080, "127.0.10.10"),
                              ("cp-lab-monitor", 9090, 9090, "127.0.10.50"),
                              ("cp-lab-monitor", GRAFANA_PORT, GRAFANA_PORT, "127.0.10.50")}


def test_secrets_are_random_passwords_and_stay_secret_everywhere(lab):
    passwords = {r.name: r.inputs
                 for r in lab.of_type("random:index/randomPassword:RandomPassword")}
    assert set(passwords) == {f"secret-{n.replace('_', '-')}" for n in (
        "postgres_superuser", "app_db", "pgbouncer_auth", "pgbouncer_stats", "monitoring_db",
        "redis", "django_secret_key", "grafana_admin")}
    for inputs in passwords.values():
        assert inputs["special"] is False and inputs["length"] >= 32
    values = [secret_value(name) for name in passwords]

    # Every input holding a secret reaches the engine as a secret ...
    for resource in lab.of_type(CONTAINER):
        for part in plain_parts(resource.inputs):
            leaked = [v for v in values if v in part]
            assert not leaked, f"{resource.inputs['name']}: secret in plain input {part[:80]!r}"
    config_upload, secret = unwrap(lab.container("cp-lab-app1-app")["uploads"])
    assert secret
    assert secret_value("secret-app-db") in config_upload[0]["content"]
    assert config_upload[0]["permissions"] == "0400"
    exporter_files, secret = unwrap(lab.container("cp-lab-cache-redis_exporter")["uploads"])
    assert secret and exporter_files[0]["content"] == (
        f'{{"redis://cache:6379": "{secret_value("secret-redis")}"}}')
    # Never in the environment, where `docker inspect` shows it.
    for resource in lab.of_type(CONTAINER):
        env, secret = unwrap(resource.inputs.get("envs", []))
        assert not secret and not any(v in e for v in values for e in env)
    # ... and files without secrets stay readable in previews and diffs.
    nginx_upload, secret = unwrap(lab.container("cp-lab-edge-nginx")["uploads"])
    assert not secret and "upstream app" in nginx_upload[0]["content"]

    # The Outputs themselves are marked secret.
    for key in ["app1/app/etc/civicpulse/app/config.json",
                "cache/redis/usr/local/etc/redis/redis.conf",
                "pool/pgbouncer/etc/civicpulse/pgbouncer/userlist.txt",
                "db/postgresql/docker-entrypoint-initdb.d/10-civicpulse.sql",
                "monitor/grafana/run/secrets/civicpulse/grafana_admin"]:
        assert lab.secret_flags[f"file:{key}"] is True, key
    assert all(flag for flag in lab.secret_flags.values())  # only secret files are Outputs
    assert isinstance(lab.stack.files[("edge", "nginx", "/var/lib/civicpulse/nginx/nginx.conf")],
                      str)
    assert sum(k.startswith("secret:") for k in lab.secret_flags) == len(passwords)


def nginx_upstreams(run: Run) -> list[str]:
    uploads, _ = unwrap(run.container(f"cp-{run.topology.stack}-edge-nginx")["uploads"])
    conf = next(u["content"] for u in uploads if u["file"].endswith("/nginx.conf"))
    block = conf.split("upstream app {", 1)[1].split("}", 1)[0]
    return [line.split()[1] for line in block.splitlines() if line.strip().startswith("server")]


def test_a_second_app_host_is_one_line_and_lands_behind_nginx(tmp_path, lab):
    single = run_program(stack_file(tmp_path, lambda d: d["hosts"].pop("app2")))
    assert [k for k in single.stack.containers if k[1] == "app"] == [("app1", "app")]
    assert nginx_upstreams(single) == ["app1:8000"]

    assert sorted(k for k in lab.stack.containers if k[1] == "app") == [
        ("app1", "app"), ("app2", "app")]
    assert nginx_upstreams(lab) == ["app1:8000", "app2:8000"]
    app2 = lab.container("cp-lab-app2-app")
    assert app2["image"] == APP_IMAGE
    assert app2["networkMode"] == "container:sandbox-app2-id"
    assert lab.sandbox("app2")["networksAdvanced"][0]["aliases"] == ["app2"]
    # Only the first app host runs the migrations (the role's run_once).
    assert "migrate" in " ".join(lab.container("cp-lab-app1-app")["command"])
    assert "migrate" not in " ".join(app2["command"])


def test_local_and_docker_targets_derive_the_same_services_and_ports(lab):
    inventory = build_inventory(lab.topology)["all"]
    local = {(host, svc, hv[f"{svc}_port"])
             for host, hv in inventory["hosts"].items() for svc in hv["cp_services"]}
    docker_side = {(c.host, c.service, c.port) for c in lab.stack.plan.containers
                   if c.service != "grafana"}  # Grafana exists on the docker target only
    assert docker_side == local
    assert {(h, s) for h, s, _ in local} == set(lab.stack.containers) - {("monitor", "grafana")}
    assert set(inventory["children"]) == {s for _, s, _ in local}

    # Prometheus scrapes the same service:metrics port pairs, by alias instead of loopback
    # address (the app on the master's metrics listener, not the workers' port).
    uploads, _ = unwrap(lab.container("cp-lab-monitor-prometheus")["uploads"])
    prom = yaml.safe_load(next(u["content"] for u in uploads
                               if u["file"] == "/etc/prometheus/prometheus.yml"))
    scraped = {t for job in prom["scrape_configs"] for sc in job["static_configs"]
               for t in sc["targets"]}
    expected = {f"{s.host}:{s.metrics_port}" for s in lab.topology.services
                if s.kind.metrics_path}
    assert scraped == expected
    assert {"app1:8001", "app2:8001"} <= scraped
    am = prom["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert am == [f"monitor:{lab.topology.one('alertmanager').port}"]


def test_dependencies_start_in_order():
    topology = load_stack("lab")
    plan = program.plan(topology)
    order = [f"{s.host}/{s.service}" for s, _ in program._order(plan.containers, plan.name)]
    for before, after in [("db/postgresql", "pool/pgbouncer"), ("pool/pgbouncer", "app1/app"),
                          ("cache/redis", "app1/app"), ("app1/app", "app2/app"),
                          ("app2/app", "edge/nginx"), ("monitor/prometheus", "monitor/grafana")]:
        assert order.index(before) < order.index(after), (before, after)
    assert plan.container("db", "postgresql").wait_healthy
    assert plan.container("app1", "app").wait_healthy


def test_two_stacks_get_disjoint_networks_and_names(tmp_path, lab):
    def move(d: dict) -> None:
        for host in d["hosts"].values():
            host["address"] = host["address"].replace("127.0.10.", "127.0.20.")

    other = layout_for(stack_file(tmp_path, move, name="itest"))
    mine = lab.stack.plan.layout
    assert (mine.subnet, other.subnet) == ("172.16.10.0/24", "172.16.20.0/24")
    assert other.network == "cp-itest" and other.container("db", "postgresql") == (
        "cp-itest-db-postgresql")
