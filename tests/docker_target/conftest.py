"""The docker target for real: a private dockerd, the stack's images built from a
debootstrapped Debian base, and the Pulumi program's containers created on it by the
stand-in for `pulumi up` (tests/docker_target/pulumi_standin.py). Destroyed at the end of
the session, and checked to leave nothing behind.

The stack is `dtest`: the lab stack's shape on 127.0.30.0/24, target docker, its
network on 172.16.30.0/24. Grafana is left out: its image cannot be pulled here (no
registry is reachable, and nothing may leave this machine).
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass

import docker
import pytest
import yaml

from infra.docker import build_contexts
from infra.docker.services import GRAFANA_IMAGE, plan
from infra.topology import Topology, load_stack
from tests.conftest import throwaway_stack
from tests.docker_target.base_image import ensure_base_image
from tests.docker_target.engine import PrivateEngine
from tests.docker_target.pulumi_standin import Applied, Standin, down, evaluate, write_secrets

DTEST_NET = "127.0.30"
BASE_IMAGE = "civicpulse/bookworm-minbase:local"


@dataclass
class DockerStack:
    topology: Topology
    client: docker.DockerClient
    engine: PrivateEngine
    applied: Applied
    timings: dict[str, float]


def _log(line: str) -> None:
    print(f"docker stage: {line}", flush=True)


@pytest.fixture(scope="session")
def dtest_topology(tmp_path_factory: pytest.TempPathFactory) -> Topology:
    data = throwaway_stack("dtest", DTEST_NET, backups=False)
    data["target"] = "docker"
    data["docker"] = {"base_image": BASE_IMAGE, "subnet": "172.16.30.0/24"}
    data["monitoring"]["webhook_port"] = 9199
    path = tmp_path_factory.mktemp("dstack") / "dtest.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return load_stack(path)


@pytest.fixture(scope="session")
def docker_stack(dtest_topology: Topology) -> Iterator[DockerStack]:
    topology = dtest_topology
    engine = PrivateEngine(topology.state_dir / "dockerd")
    timings: dict[str, float] = {}
    started = time.monotonic()
    client = engine.start()
    timings["engine_start_s"] = time.monotonic() - started
    previous = os.environ.get("DOCKER_HOST")
    # The docker CLI (the GameDay driver, testinfra's docker backend) talks to ours.
    os.environ["DOCKER_HOST"] = engine.url
    try:
        down(client, topology.stack, log=_log)  # what a killed earlier run left
        step = time.monotonic()
        how = ensure_base_image(client, BASE_IMAGE, log=_log)
        timings["base_image_s"] = time.monotonic() - step
        _log(f"base image {BASE_IMAGE}: {how} in {timings['base_image_s']:.1f}s")
        try:
            client.images.get(GRAFANA_IMAGE)
            grafana = True
        except docker.errors.ImageNotFound:
            grafana = False
            _log(f"Grafana left out: {GRAFANA_IMAGE} is not in the engine's store, and it "
                 "cannot be pulled here (no registry is reachable from this machine)")
        step = time.monotonic()
        # Prometheus published too: the GameDay engine queries it from this machine.
        contexts = build_contexts.prepare(
            topology, plan(topology, publish_monitoring=True, grafana=grafana).images)
        timings["contexts_s"] = time.monotonic() - step
        resources = evaluate(topology, contexts, publish_monitoring=True, grafana=grafana)
        step = time.monotonic()
        applied = Standin(client, log=_log, base_url=engine.url).up(topology, resources)
        timings["up_s"] = time.monotonic() - step
        timings["images_s"] = sum(applied.images.values())
        write_secrets(topology, applied)
        _log("timings: " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
        yield DockerStack(topology, client, engine, applied, timings)
    finally:
        try:
            down(client, topology.stack, log=_log)
            _assert_nothing_left(client, topology)
        finally:
            engine.stop()
            assert not engine.mounts(), f"the engine left mounts behind: {engine.mounts()}"
            if previous is None:
                os.environ.pop("DOCKER_HOST", None)
            else:
                os.environ["DOCKER_HOST"] = previous


def _assert_nothing_left(client: docker.DockerClient, topology: Topology) -> None:
    """Destroy leaves no container, volume, network or listener behind."""
    selector = {"label": f"civicpulse.stack={topology.stack}"}
    left = ([c.name for c in client.containers.list(all=True, filters=selector)]
            + [v.name for v in client.volumes.list(filters=selector)]
            + [n.name for n in client.networks.list(filters=selector)])
    nginx = topology.one("nginx")
    with socket.socket() as probe:
        probe.settimeout(1)
        listening = probe.connect_ex((nginx.address, nginx.port)) == 0
    assert not left and not listening, f"left behind: {left}, nginx port open: {listening}"
    _log(f"stack {topology.stack}: destroyed, nothing left behind")


def stack_containers(stack: DockerStack) -> list[docker.models.containers.Container]:
    return stack.client.containers.list(
        all=True, filters={"label": f"civicpulse.stack={stack.topology.stack}"})


def wait_all_healthy(stack: DockerStack, timeout_s: float = 120) -> dict[str, str]:
    """Container name → health status, once every checked container is healthy."""
    deadline = time.monotonic() + timeout_s
    while True:
        health = {}
        for container in stack_containers(stack):
            state = container.attrs["State"]
            health[container.name] = (state.get("Health") or {}).get("Status",
                                                                     state["Status"])
        if all(v in ("healthy", "running") for v in health.values()) or \
                time.monotonic() > deadline:
            return health
        time.sleep(1)


def secret_values(topology: Topology) -> dict[str, str]:
    directory = topology.state_dir / "secrets"
    return {p.name: p.read_text().strip() for p in directory.iterdir() if p.is_file()}
