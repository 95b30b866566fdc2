"""The Pulumi program of the docker target: the stack's plan as pulumi-docker resources.

`define_stack(topology)` creates, in the current Pulumi stack:

- the stack's secrets (`pulumi_random.RandomPassword`, alphanumeric like the local
  target's, wrapped in `Output.secret` so every input built from them stays secret);
- one private bridge network with a fixed subnet (`infra.docker.layout`);
- the images: pinned images pulled (`RemoteImage`), the workload built from
  `app/Dockerfile` (`docker.Image`, not pushed);
- named volumes for PostgreSQL, Redis, Prometheus and Grafana data;
- per host a sandbox container owning the host's network namespace (alias = host
  name, fixed address, the host's published ports), and per service a container in
  that namespace with its health check, restart policy, limits, mounts and the
  config files rendered from the Ansible role templates (uploaded, not bind-mounted:
  nothing on the Docker host needs to hold them).

It creates nothing at import time: call `define_stack` inside a Pulumi program (the
Automation API's inline program in `infra.targets.docker_lifecycle`, or a test under mocks).
"""

from __future__ import annotations

import hashlib
import re
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pulumi
import pulumi_docker as docker
import pulumi_random as random

from infra.docker.layout import (
    LABEL_HOST,
    LABEL_SERVICE,
    LABEL_STACK,
    NETTOOLS_IMAGE,
    SANDBOX_IMAGE,
)
from infra.docker.services import ALL_SECRET_NAMES, APP_DOCKERFILE, plan
from infra.docker.specs import ContainerSpec, FileSpec, StackPlan
from infra.topology import Topology
from infra.workload import build_archive, requirements, workload_dir

#: Length of each generated secret (the Django key is longer, as on the local target).
SECRET_LENGTHS = {"django_secret_key": 50}
RESTART_POLICY = "unless-stopped"
LOG_OPTS = {"max-size": "10m", "max-file": "3"}


@dataclass
class DockerStack:
    """Handles on what `define_stack` created (the tests inspect them)."""

    plan: StackPlan
    network: docker.Network
    secrets: dict[str, pulumi.Output[str]]
    images: dict[str, docker.RemoteImage | docker.Image]
    volumes: dict[str, docker.Volume]
    sandboxes: dict[str, docker.Container]
    containers: dict[tuple[str, str], docker.Container]
    #: The content uploaded for each file: (host, service, path) → str or secret Output.
    files: dict[tuple[str, str, str], pulumi.Input[str]] = field(default_factory=dict)
    #: The environment of each container: (host, service) → list of KEY=value inputs.
    envs: dict[tuple[str, str], list[pulumi.Input[str]]] = field(default_factory=dict)


def _labels(stack: str, host: str | None = None, service: str | None = None
            ) -> list[docker.ContainerLabelArgs]:
    pairs = {LABEL_STACK: stack, LABEL_HOST: host, LABEL_SERVICE: service}
    return [docker.ContainerLabelArgs(label=k, value=v) for k, v in pairs.items() if v]


def _slug(text: str) -> str:
    return re.sub(r"[^a-zA-Z0-9]+", "-", text).strip("-")


def workload_digest(topology: Topology) -> str:
    """sha256 of the workload source and the Dockerfile: a new value replaces the app
    containers (the image tag alone does not change when the source does)."""
    with tempfile.TemporaryDirectory() as tmp:
        archive = build_archive(topology, Path(tmp) / "workload.tar.gz")
        digest = hashlib.sha256(archive.read_bytes())
    digest.update(APP_DOCKERFILE.read_bytes())
    return digest.hexdigest()


def _secrets(names: list[str]) -> dict[str, pulumi.Output[str]]:
    result = {}
    for name in names:
        password = random.RandomPassword(
            f"secret-{_slug(name)}", length=SECRET_LENGTHS.get(name, 32),
            # Alphanumeric only, like infra.secrets: the values end up in URLs, libpq
            # strings and config files with their own quoting rules.
            special=False, upper=True, lower=True, numeric=True, min_numeric=2)
        # The provider marks `result` secret too; saying so here makes it hold for
        # everything derived from it whatever the engine does (and under test mocks).
        result[name] = pulumi.Output.secret(password.result)
    return result


def _content(spec_file: FileSpec, secrets: Mapping[str, pulumi.Output[str]]
             ) -> pulumi.Input[str]:
    """The file's text; a secret Output if it holds secrets (rendered inside apply)."""
    names = list(spec_file.secrets)
    if not names:
        return spec_file.text()
    rendered = pulumi.Output.all(*[secrets[n] for n in names]).apply(
        lambda values: spec_file.text(dict(zip(names, values, strict=True))))
    return pulumi.Output.secret(rendered)


def _order(specs: tuple[ContainerSpec, ...], name_of: Callable[[ContainerSpec], str]
           ) -> list[tuple[ContainerSpec, set[str]]]:
    """Containers in dependency order, each with the names of the containers it waits for."""
    by_name = {name_of(s): s for s in specs}
    needs = {name_of(s): {name_of(o) for o in specs if o.service in s.after}
             | set(s.after_containers) for s in specs}
    ordered: list[tuple[ContainerSpec, set[str]]] = []
    done: set[str] = set()
    while len(ordered) < len(specs):
        ready = [n for n in by_name if n not in done and needs[n] <= done]
        if not ready:
            cycle = sorted(n for n in by_name if n not in done)
            raise ValueError(f"container dependencies form a cycle: {', '.join(cycle)}")
        for name in ready:
            ordered.append((by_name[name], needs[name]))
            done.add(name)
    return ordered


def define_stack(topology: Topology, publish_monitoring: bool | None = None) -> DockerStack:
    """Create every resource of the stack in the current Pulumi program."""
    if publish_monitoring is None:
        publish_monitoring = bool(pulumi.Config().get_bool("publish_monitoring"))
    stack_plan = plan(topology, publish_monitoring=publish_monitoring)
    layout = stack_plan.layout
    stack = topology.stack

    needed = sorted({n for c in stack_plan.containers for n in c.secret_names})
    unknown = [n for n in needed if n not in ALL_SECRET_NAMES]
    if unknown:
        raise ValueError(f"templates read secrets the stack does not have: {unknown}")
    secrets = _secrets([n for n in ALL_SECRET_NAMES if n in needed])

    network = docker.Network(
        "network", name=layout.network, driver="bridge",
        ipam_configs=[docker.NetworkIpamConfigArgs(subnet=layout.subnet,
                                                   gateway=layout.gateway)],
        labels=[docker.NetworkLabelArgs(label=LABEL_STACK, value=stack)])

    images: dict[str, docker.RemoteImage | docker.Image] = {}
    image_refs: dict[str, pulumi.Input[str]] = {}
    pulled = {c.image for c in stack_plan.containers if not c.built}
    for ref in sorted(pulled | {SANDBOX_IMAGE, NETTOOLS_IMAGE}):
        remote = docker.RemoteImage(f"image-{_slug(ref)}", name=ref, keep_locally=True)
        images[ref] = remote
        image_refs[ref] = remote.image_id
    built = sorted({c.image for c in stack_plan.containers if c.built})
    digest = workload_digest(topology) if built else ""
    for ref in built:
        image = docker.Image(
            f"image-{_slug(ref)}", image_name=ref, skip_push=True,
            build=docker.DockerBuildArgs(
                context=str(workload_dir(topology)), dockerfile=str(APP_DOCKERFILE),
                args={"REQUIREMENTS": " ".join(requirements(topology))}))
        images[ref] = image
        image_refs[ref] = image.image_name

    volumes = {}
    for spec in stack_plan.containers:
        for volume_name, _path in spec.volumes:
            volumes[volume_name] = docker.Volume(
                f"volume-{spec.host}-{_slug(spec.service)}", name=volume_name,
                labels=[docker.VolumeLabelArgs(label=k, value=v) for k, v in
                        ((LABEL_STACK, stack), (LABEL_HOST, spec.host),
                         (LABEL_SERVICE, spec.service))])

    sandboxes = {}
    for host in stack_plan.hosts:
        sandboxes[host.name] = docker.Container(
            f"sandbox-{host.name}", name=host.sandbox, image=image_refs[SANDBOX_IMAGE],
            hostname=host.name,
            networks_advanced=[docker.ContainerNetworksAdvancedArgs(
                name=network.name, aliases=[host.alias], ipv4_address=host.ip)],
            ports=[docker.ContainerPortArgs(internal=p.internal, external=p.external, ip=p.ip,
                                            protocol="tcp") for p in host.ports],
            # The GameDay engine's webhook listens on the Docker host.
            hosts=[docker.ContainerHostArgs(host="host.docker.internal", ip="host-gateway")],
            restart=RESTART_POLICY, memory=16, memory_swap=16,
            labels=[*_labels(stack, host.name), docker.ContainerLabelArgs(
                label="civicpulse.role", value="sandbox")],
            log_driver="json-file", log_opts=LOG_OPTS)

    result = DockerStack(plan=stack_plan, network=network, secrets=secrets, images=images,
                         volumes=volumes, sandboxes=sandboxes, containers={})
    created: dict[str, docker.Container] = {}
    for spec, waits_for in _order(stack_plan.containers, stack_plan.name):
        name = stack_plan.name(spec)
        # Every host's alias must exist before any service starts (nginx resolves its
        # upstreams once, at start); dependencies wait for health where they ask to.
        depends_on: list[pulumi.Resource] = [*sandboxes.values(),
                                             *(created[n] for n in sorted(waits_for))]
        container = _container(spec, name, stack, image_refs[spec.image],
                               sandboxes[spec.host], volumes, secrets, digest, result,
                               pulumi.ResourceOptions(depends_on=depends_on))
        created[name] = container
        result.containers[(spec.host, spec.service)] = container

    pulumi.export("app_url", topology.app_url)
    pulumi.export("network", layout.network)
    pulumi.export("subnet", layout.subnet)
    pulumi.export("containers", {f"{h}/{s}": layout.container(h, s)
                                 for (h, s) in result.containers})
    pulumi.export("secrets", pulumi.Output.secret(secrets))
    return result


def _container(spec: ContainerSpec, name: str, stack: str, image: pulumi.Input[str],
               sandbox: docker.Container, volumes: Mapping[str, docker.Volume],
               secrets: Mapping[str, pulumi.Output[str]], digest: str,
               result: DockerStack, opts: pulumi.ResourceOptions) -> docker.Container:
    key = (spec.host, spec.service)
    # Secrets never go into the environment (docker inspect shows it): only files.
    envs: list[pulumi.Input[str]] = [f"{k}={v}" for k, v in sorted(spec.env.items())]
    result.envs[key] = envs
    uploads = []
    for item in spec.files:
        content = _content(item, secrets)
        result.files[(spec.host, spec.service, item.path)] = content
        uploads.append(docker.ContainerUploadArgs(
            file=item.path, content=content, permissions=item.mode, owner=item.owner,
            group=item.group))
    labels = _labels(stack, spec.host, spec.service)
    if spec.built:
        labels.append(docker.ContainerLabelArgs(label="civicpulse.workload-digest",
                                                value=digest))
    check = spec.healthcheck
    return docker.Container(
        f"{spec.host}-{_slug(spec.service)}", name=name, image=image,
        # The host's network namespace: its alias, address and published ports.
        network_mode=sandbox.id.apply(lambda sandbox_id: f"container:{sandbox_id}"),
        entrypoints=list(spec.entrypoint) if spec.entrypoint is not None else None,
        command=list(spec.command) or None,
        envs=envs or None,
        user=spec.user,
        healthcheck=docker.ContainerHealthcheckArgs(
            tests=list(check.test), interval=f"{check.interval_s}s",
            timeout=f"{check.timeout_s}s", retries=check.retries,
            start_period=f"{check.start_period_s}s") if check else None,
        wait=spec.wait_healthy and check is not None,
        wait_timeout=spec.wait_timeout_s if spec.wait_healthy and check else None,
        restart=RESTART_POLICY,
        memory=spec.memory_mb,
        # No swap: a container over its limit is OOM-killed (and restarted), which
        # a GameDay can observe, instead of slowing the whole machine down.
        memory_swap=spec.memory_mb,
        cpus=f"{spec.cpus:g}",
        shm_size=spec.shm_mb,
        volumes=[docker.ContainerVolumeArgs(volume_name=volumes[v].name, container_path=path)
                 for v, path in spec.volumes] or None,
        uploads=uploads or None,
        stop_signal=spec.stop_signal,
        stop_timeout=spec.stop_timeout_s,
        destroy_grace_seconds=spec.stop_timeout_s,
        security_opts=["no-new-privileges:true"],
        labels=labels,
        log_driver="json-file", log_opts=LOG_OPTS,
        opts=opts)
