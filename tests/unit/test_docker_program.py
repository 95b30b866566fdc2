"""The docker target's Pulumi program, run under Pulumi's own mocks (no CLI, no engine).

Each test runs `define_stack` inside `@pulumi.runtime.test` with a mock that records
every resource registration as the engine would receive it (tests/pulumi_recording.py):
secret values arrive wrapped in Pulumi's secret signature, which is how these tests
tell that a value is a secret. Build contexts are empty directories here (writing
them runs pip); tests/docker_target creates everything on a real engine.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml

from infra.docker.preview import (
    RecordingMocks,
    close,
    install_mocks,
    mock_secret_value,
    plain_parts,
    unwrap,
)
from infra.docker.services import NOT_ON_DOCKER  # noqa: E402
from tests.stacks import docker_lab, without_backups

# Pitfall: the mocks must be in place before the program module is imported.
close(install_mocks(RecordingMocks(), "test"))

from infra.catalog import SERVICE_KINDS  # noqa: E402
from infra.docker import program  # noqa: E402
from infra.docker.images import image_name  # noqa: E402
from infra.docker.layout import layout_for  # noqa: E402
from infra.docker.services import GRAFANA_IMAGE, GRAFANA_PORT  # noqa: E402
from infra.inventory import build_inventory  # noqa: E402
from infra.topology import Topology, load_stack, stack_path  # noqa: E402
from infra.workload import workload_dir  # noqa: E402

CONTAINER = "docker:index/container:Container"
LAB = without_backups(yaml.safe_load(stack_path("lab").read_text()))
secret_value = mock_secret_value


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


def contexts_for(topology: Topology, root: Path) -> dict[str, Path]:
    stack_plan = program.plan(topology)
    return {key: workload_dir(topology) if spec.context == "app" else root / key
            for key, spec in stack_plan.images.items()}


def run_program(topology: Topology, publish_monitoring: bool | None = None,
                config: dict[str, str] | None = None, grafana: bool = True,
                root: Path = Path("/nonexistent/contexts")) -> Run:
    mocks = RecordingMocks()
    loop = install_mocks(mocks, topology.stack)
    pulumi.runtime.set_all_config(config or {})
    holder: dict[str, Any] = {}

    @pulumi.runtime.test
    def define() -> pulumi.Output:
        stack = holder["stack"] = program.define_stack(
            topology, publish_monitoring, contexts=contexts_for(topology, root), grafana=grafana)
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
    return run_program(docker_lab())


def test_every_service_runs_an_image_built_from_the_stacks_debian_base(lab):
    containers = lab.service_containers()
    expected = {(s.host, s.name) for s in lab.topology.services} | {
        ("monitor", "grafana"), ("monitor", "notification_log")}
    assert set(containers) == expected
    built = {r.inputs["imageName"]: r.inputs for r in lab.of_type("docker:index/image:Image")}
    for (host, service), inputs in containers.items():
        if service == "grafana":  # no Debian package: the one upstream image
            assert inputs["image"] == f"sha256:{GRAFANA_IMAGE}"
            continue
        key = {"notification_log": "alertmanager"}.get(service, service)
        assert inputs["image"] == image_name(lab.topology, key), f"{host}/{service}"
        assert inputs["image"] in built
    assert [r.inputs["name"] for r in lab.of_type("docker:index/remoteImage:RemoteImage")] == [
        GRAFANA_IMAGE]
    for name, inputs in built.items():
        build = inputs["build"]
        assert inputs["skipPush"] is True, name
        # The daemon's classic builder (no buildx in Debian) on the host's network.
        assert (build["builderVersion"], build["network"]) == ("BuilderV1", "host"), name
    runtime = built[image_name(lab.topology, "runtime")]["build"]["args"]
    assert runtime["BASE"] == lab.topology.docker.base_image == "debian:bookworm-slim"
    assert set(runtime["PACKAGES"].split()) == {"postgresql-client-15", "redis-tools", "curl"}
    for kind in SERVICE_KINDS.values():
        if kind.name in NOT_ON_DOCKER:
            continue
        key = "app-deps" if kind.name == "app" else kind.name
        args = built[image_name(lab.topology, key)]["build"]["args"]
        # The catalog's Debian packages, the same the local target installs.
        assert set(kind.packages) <= set(args["PACKAGES"].split()), kind.name
        assert (args["SERVICE_USER"], args["SERVICE_UID"]) == (kind.user, str(kind.docker_uid))
        assert args["RUNTIME"] == image_name(lab.topology, "runtime")
    app = built[image_name(lab.topology, "app")]["build"]
    assert app["context"] == str(workload_dir(lab.topology))
    assert app["dockerfile"].endswith("app/Dockerfile")
    deps = built[image_name(lab.topology, "app-deps")]["build"]["args"]
    assert "gunicorn" in deps["REQUIREMENTS"] and deps["VENV"] == "/var/lib/civicpulse/app/venv"


def test_containers_run_the_roles_supervised_programs_as_their_users(lab):
    pgbouncer = lab.container("cp-lab-pool-pgbouncer")
    assert pgbouncer["entrypoints"] == ["/usr/sbin/pgbouncer",
                                        "/var/lib/civicpulse/pgbouncer/pgbouncer.ini"]
    assert pgbouncer["user"] == "10030:10030"
    assert pgbouncer["workingDir"] == "/var/lib/civicpulse/pgbouncer"
    assert pgbouncer["stopSignal"] == "SIGINT" and pgbouncer["stopTimeout"] == 15
    nginx = lab.container("cp-lab-edge-nginx")
    assert nginx["entrypoints"][0] == "/usr/sbin/nginx" and nginx["stopSignal"] == "SIGQUIT"
    pg = lab.container("cp-lab-db-postgresql")
    # The first start (initdb, roles) wraps the role's program, which it then execs.
    assert pg["entrypoints"] == ["/var/lib/civicpulse/postgresql/conf/first-start.sh",
                                 "/usr/lib/postgresql/15/bin/postgres", "-D",
                                 "/var/lib/civicpulse/postgresql/volume/data"]
    for (host, service), inputs in lab.service_containers().items():
        if service in SERVICE_KINDS:
            uid = SERVICE_KINDS[service].docker_uid
            assert inputs["user"] == f"{uid}:{uid}", f"{host}/{service}"

def test_containers_join_their_hosts_namespace_which_has_the_alias_and_fixed_address(lab):
    layout = lab.stack.plan.layout
    networks = {r.inputs["name"]: r.inputs for r in lab.of_type("docker:index/network:Network")}
    assert set(networks) == {"cp-lab", "cp-lab-edge"}
    assert networks["cp-lab"]["internal"] is True
    assert networks["cp-lab"]["ipamConfigs"] == [{"subnet": "172.16.10.0/24",
                                                  "gateway": "172.16.10.1"}]
    assert "internal" not in networks["cp-lab-edge"]  # only for published ports
    for host in lab.topology.hosts:
        sandbox = lab.sandbox(host.name)
        stack_network = {"name": "cp-lab", "aliases": [host.name],
                         "ipv4Address": "172.16." + ".".join(host.address.split(".")[2:])}
        edge = [{"name": "cp-lab-edge"}] if host.name == "edge" else []
        assert sandbox["networksAdvanced"] == [*edge, stack_network]
        assert sandbox["restart"] == "unless-stopped"
        assert sandbox["command"] == ["sleep", "infinity"]
    for (host, service), inputs in lab.service_containers().items():
        assert inputs["networkMode"] == f"container:sandbox-{host}-id", f"{host}/{service}"
        assert "networksAdvanced" not in inputs
        assert "ports" not in inputs  # a joined container cannot publish ports
        assert inputs["name"] == layout.container(host, service)


def test_a_stack_config_subnet_places_the_hosts_at_their_offsets(tmp_path):
    topology = stack_file(tmp_path, lambda d: d.update(docker={"subnet": "10.77.0.0/24"}))
    layout = layout_for(topology)
    assert (layout.subnet, layout.gateway) == ("10.77.0.0/24", "10.77.0.1")
    assert layout.hosts["db"].ip == "10.77.0.32"

def test_every_container_has_a_health_check_restart_policy_and_limits(lab):
    for (host, service), inputs in lab.service_containers().items():
        assert inputs["restart"] == "unless-stopped"
        assert 0 < inputs["memory"] == inputs["memorySwap"], f"{host}/{service}: no swap"
        assert 0 < float(inputs["cpus"]) <= 1.0, f"{host}/{service}"
        assert inputs["securityOpts"] == ["no-new-privileges=true"]
        check = inputs["healthcheck"]
        assert check["tests"][0] in ("CMD", "CMD-SHELL")
        port = lab.stack.plan.container(host, service).port
        assert str(port) in " ".join(check["tests"]), f"{host}/{service} checks its own port"
        assert check["retries"] >= 3
        if service == "app":
            # ... and the Gunicorn master's metrics listener, which Prometheus scrapes.
            assert "http://127.0.0.1:8001/metrics" in " ".join(check["tests"]), host
    pg = lab.container("cp-lab-db-postgresql")
    assert pg["shmSize"] == 256
    assert pg["memory"] >= lab.topology.sizing.postgresql.shared_buffers_mb
    redis = lab.container("cp-lab-cache-redis")
    assert redis["memory"] > lab.topology.sizing.redis.maxmemory_mb

def test_data_lives_in_named_volumes(lab):
    volumes = {r.inputs["name"] for r in lab.of_type("docker:index/volume:Volume")}
    mounts = {
        ("db", "postgresql"): "/var/lib/civicpulse/postgresql/volume/data",
        ("cache", "redis"): "/var/lib/civicpulse/redis",
        ("monitor", "prometheus"): "/var/lib/civicpulse/prometheus/data",
        ("monitor", "grafana"): "/var/lib/grafana",
        # The pager's log, which the GameDay engine reads from the volume.
        ("monitor", "notification_log"): "/var/lib/civicpulse/alertmanager/notifications",
    }
    assert volumes == {f"cp-lab-{h}-{s}-data" for h, s in mounts}
    containers = lab.service_containers()
    for (host, service), path in mounts.items():
        assert containers[(host, service)]["volumes"] == [
            {"volumeName": f"cp-lab-{host}-{service}-data", "containerPath": path}]
    stateless = [k for k, v in containers.items() if "volumes" in v]
    assert sorted(stateless) == sorted(mounts)


def test_grafana_can_be_left_out_and_its_image_matches_the_dashboards_sdk():
    run = run_program(docker_lab(), grafana=False)
    assert ("monitor", "grafana") not in run.stack.containers
    assert not run.of_type("docker:index/remoteImage:RemoteImage")
    # The dashboards are generated by grafana-foundation-sdk for one Grafana version
    # (its version's public part); the image runs that version, which reads the
    # schemaVersion the SDK writes.
    import importlib.metadata

    import grafana_foundation_sdk.models.dashboard as models

    sdk = importlib.metadata.version("grafana-foundation-sdk").split("!")[-1]
    assert GRAFANA_IMAGE.split(":")[1].rsplit(".", 1)[0] == sdk.rsplit(".", 1)[0]
    written = models.Dashboard().schema_version
    for path in sorted((Path(program.__file__).parents[2] / "monitoring" / "grafana"
                        / "dashboards").rglob("*.json")):
        import json

        assert json.loads(path.read_text())["schemaVersion"] == written, path.name

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
    run = run_program(docker_lab(), config={"civicpulse:publish_monitoring": "true"})
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
    for key in ["app1/app/var/lib/civicpulse/app/config.json",
                "cache/redis/var/lib/civicpulse/redis/redis.conf",
                "pool/pgbouncer/var/lib/civicpulse/pgbouncer/userlist.txt",
                "db/postgresql/var/lib/civicpulse/postgresql/conf/first-start.sql",
                "db/postgresql/var/lib/civicpulse/postgresql/initdb.pwfile",
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
    assert app2["image"] == image_name(lab.topology, "app")
    assert app2["networkMode"] == "container:sandbox-app2-id"
    assert lab.sandbox("app2")["networksAdvanced"][0]["aliases"] == ["app2"]
    # Only the first app host runs the migrations (the role's run_once).
    assert "migrate" in " ".join(lab.container("cp-lab-app1-app")["entrypoints"])
    assert "migrate" not in " ".join(app2["entrypoints"])


def test_local_and_docker_targets_derive_the_same_services_and_ports(lab):
    inventory = build_inventory(lab.topology)["all"]
    local = {(host, svc, hv[f"{svc}_port"])
             for host, hv in inventory["hosts"].items() for svc in hv["cp_services"]}
    # Grafana exists on the docker target only; the notification log is a program of
    # the alertmanager role on the local target, a container of its own here.
    extra = {"grafana", "notification_log"}
    docker_side = {(c.host, c.service, c.port) for c in lab.stack.plan.containers
                   if c.service not in extra}
    assert docker_side == local
    assert {(h, s) for h, s, _ in local} == {k for k in lab.stack.containers
                                              if k[1] not in extra}
    assert set(inventory["children"]) == {s for _, s, _ in local}

    # Prometheus scrapes the same service:metrics port pairs, by alias instead of loopback
    # address (the app on the master's metrics listener, not the workers' port).
    uploads, _ = unwrap(lab.container("cp-lab-monitor-prometheus")["uploads"])
    prom = yaml.safe_load(next(u["content"] for u in uploads
                               if u["file"] == "/var/lib/civicpulse/prometheus/prometheus.yml"))
    scraped = {t for job in prom["scrape_configs"] for sc in job["static_configs"]
               for t in sc["targets"]}
    expected = {f"{s.host}:{s.metrics_port}" for s in lab.topology.services
                if s.kind.metrics_path}
    assert scraped == expected
    assert {"app1:8001", "app2:8001"} <= scraped
    am = prom["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert am == [f"monitor:{lab.topology.one('alertmanager').port}"]


def test_dependencies_start_in_order():
    topology = docker_lab()
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
