"""The Pulumi program's stack, on a real Docker engine (see conftest.py)."""

from __future__ import annotations

import json
import shlex
import socket
import time

import httpx
import pytest
import testinfra

from infra.catalog import SERVICE_KINDS
from infra.docker.layout import layout_for
from infra.docker.services import plan
from tests.docker_target.conftest import (
    DockerStack,
    secret_values,
    stack_containers,
    wait_all_healthy,
)

pytestmark = [pytest.mark.slow, pytest.mark.docker]


def test_every_container_becomes_healthy_by_its_own_health_check(docker_stack: DockerStack):
    health = wait_all_healthy(docker_stack)
    assert set(health) == set(docker_stack.applied.containers)
    for container in stack_containers(docker_stack):
        if container.labels.get("civicpulse.role") == "sandbox":
            # A sandbox only holds its host's network namespace: no check, running.
            assert container.status == "running", container.name
        else:
            assert health[container.name] == "healthy", container.name


def test_health_through_nginx_and_the_api_on_both_app_hosts(docker_stack: DockerStack):
    topology = docker_stack.topology
    base = topology.app_url.rstrip("/")
    health = httpx.get(base + topology.workload.health_path, timeout=5)
    assert health.status_code == 200, health.text
    checks = health.json()["checks"]
    assert checks["database"]["status"] == "ok" and checks["cache"]["status"] == "ok"
    created = []
    with httpx.Client(base_url=base, timeout=5) as client:
        for i in range(20):
            r = client.post("/api/users/", json={"username": f"dock{i}",
                                                 "email": f"dock{i}@example.org"})
            assert r.status_code == 201, r.text
            created.append(r.json()["id"])
        again = client.post("/api/users/", json={"username": "dock0",
                                                 "email": "dock0@example.org"})
        assert again.status_code == 409
        assert client.get(f"/api/users/{created[0]}/").json()["username"] == "dock0"
    # nginx spread them over both app hosts: each one's own counter moved.
    for app in topology.instances("app"):
        name = layout_for(topology).container(app.host, "app")
        metrics = docker_stack.client.containers.get(name).exec_run(
            ["curl", "-s", f"http://127.0.0.1:{app.metrics_port}/metrics"]).output.decode()
        served = sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                     if line.startswith("civicpulse_http_requests_total{")
                     and 'method="POST"' in line)
        assert served > 0, f"{app.host} served no POST"


def test_prometheus_in_the_stack_scrapes_every_target_and_alertmanager_has_the_pager(
        docker_stack: DockerStack):
    topology = docker_stack.topology
    layout = layout_for(topology)
    prom = topology.one("prometheus")
    container = docker_stack.client.containers.get(layout.container(prom.host, "prometheus"))
    # One scrape interval after start every target has been scraped at least once.
    for _ in range(30):
        out = container.exec_run(["curl", "-sf", f"http://127.0.0.1:{prom.port}"
                                  "/api/v1/targets?state=active"]).output
        active = json.loads(out)["data"]["activeTargets"]
        down = [(t["scrapeUrl"], t["lastError"]) for t in active if t["health"] != "up"]
        if active and not down:
            break
        time.sleep(1)
    assert active and not down, down
    scraped = {t["labels"]["instance"] for t in active}
    assert scraped == {f"{s.host}:{s.metrics_port}" for s in topology.services
                       if s.kind.metrics_path}
    rules = json.loads(container.exec_run(["curl", "-sf", f"http://127.0.0.1:{prom.port}"
                                           "/api/v1/rules"]).output)
    assert len({r["name"] for g in rules["data"]["groups"] for r in g["rules"]}) > 20
    am = topology.one("alertmanager")
    pager = docker_stack.client.containers.get(layout.container(am.host, "notification_log"))
    assert pager.exec_run(["curl", "-sf", f"http://127.0.0.1:{topology.monitoring.webhook_port}"
                           "/-/healthy"]).exit_code == 0


def _container_host(stack: DockerStack, host: str, service: str, user: str = "root"):
    name = layout_for(stack.topology).container(host, service)
    return testinfra.get_host(f"docker://{user}@{name}")


def _listening_ports(tcp_tables: str) -> set[int]:
    """TCP ports in LISTEN state, from /proc/net/tcp{,6} (the images have no ss)."""
    ports = set()
    for line in tcp_tables.splitlines():
        fields = line.split()
        if len(fields) > 3 and fields[3] == "0A" and ":" in fields[1]:
            ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def test_each_service_runs_as_its_own_user_and_listens_on_its_ports(docker_stack: DockerStack):
    topology = docker_stack.topology
    for spec in plan(topology, grafana=False).containers:
        host = _container_host(docker_stack, spec.host, spec.service)
        # One exec for what /proc says: PID 1's uid (Docker's init, as the service's
        # user) and the namespace's listeners.
        status, _, tcp = host.check_output(
            "cat /proc/1/status; echo ---; cat /proc/net/tcp /proc/net/tcp6 2>/dev/null"
        ).partition("\n---\n")
        uid = int(next(line for line in status.splitlines() if line.startswith("Uid:"))
                  .split()[1])
        kind = SERVICE_KINDS.get(spec.service, SERVICE_KINDS["alertmanager"])
        assert uid == kind.docker_uid != 0, f"{spec.host}/{spec.service} runs as uid {uid}"
        assert host.user(kind.user).uid == kind.docker_uid
        assert spec.port in _listening_ports(tcp), f"{spec.service} not listening on {spec.port}"


def test_auth_is_enforced_inside_the_network(docker_stack: DockerStack):
    topology = docker_stack.topology
    app = topology.instances("app")[0]
    # From an app host, as the app's user: the clients it has, wrong or no credentials.
    host = _container_host(docker_stack, app.host, "app", user=SERVICE_KINDS["app"].user)
    pg = topology.one("postgresql")
    r = host.run(f"PGPASSWORD=wrong PGCONNECT_TIMEOUT=3 psql -h {pg.host} -p {pg.port} "
                 "-U civicpulse -d postgres -c 'select 1'")
    assert r.rc != 0 and "password authentication failed" in r.stderr, r.stderr
    pgb = topology.one("pgbouncer")
    r = host.run(f"PGPASSWORD=wrong PGCONNECT_TIMEOUT=3 psql -h {pgb.host} -p {pgb.port} "
                 "-U civicpulse -d civicpulse -c 'select 1'")
    assert r.rc != 0 and "authentication failed" in r.stderr, r.stderr
    redis = topology.one("redis")
    r = host.run(f"redis-cli -h {redis.host} -p {redis.port} SET probe 1")
    assert "NOAUTH" in r.stdout + r.stderr


def test_no_secret_in_a_world_readable_file(docker_stack: DockerStack):
    values = [v for v in secret_values(docker_stack.topology).values() if len(v) >= 16]
    assert len(values) >= 7
    pattern = " ".join(f"-e {shlex.quote(v)}" for v in values)
    for spec in plan(docker_stack.topology, grafana=False).containers:
        # As a user of no service: what it can read is what "world-readable" means.
        host = _container_host(docker_stack, spec.host, spec.service, user="nobody")
        found = host.run("find /var/lib/civicpulse /etc /run -xdev -type f -perm -o+r "
                         f"-size -1M -print0 2>/dev/null | xargs -0 -r grep -l -F {pattern}"
                         " || true")
        assert found.stdout.strip() == "", f"{spec.service}: secrets in {found.stdout}"
        owner = _container_host(docker_stack, spec.host, spec.service,
                                user=spec.user.split(":")[0] if spec.user else "root")
        for item in spec.files:
            if item.secrets:
                f = owner.file(item.path)
                assert f.mode == 0o400 and f.uid == int(item.owner), item.path
    # Not in any container's environment either (docker inspect shows it).
    for container in stack_containers(docker_stack):
        env = " ".join(container.attrs["Config"].get("Env") or [])
        assert not any(v in env for v in values), container.name


def test_only_nginx_and_prometheus_are_published_and_only_on_loopback(
        docker_stack: DockerStack):
    published = {}
    for container in stack_containers(docker_stack):
        for port, bindings in (container.attrs["NetworkSettings"]["Ports"] or {}).items():
            for binding in bindings or []:
                published[(container.name, port)] = (binding["HostIp"], binding["HostPort"])
    stack = docker_stack.topology.stack
    # The stage deploys with publish_monitoring (the GameDays query Prometheus).
    expected = {(f"cp-{stack}-{s.host}", f"{s.port}/tcp"): (s.address, str(s.port))
                for s in (docker_stack.topology.one("nginx"),
                          docker_stack.topology.one("prometheus"))}
    assert published == expected
    with open("/proc/sys/net/ipv4/ip_forward") as fh:
        assert fh.read().strip() == "0"
    network = docker_stack.client.networks.get(f"cp-{stack}")
    assert network.attrs["Internal"] is True
    assert network.attrs["IPAM"]["Config"][0]["Subnet"] == "172.16.30.0/24"
    nginx = docker_stack.topology.one("nginx")
    with socket.create_connection((nginx.address, nginx.port), timeout=2):
        pass
