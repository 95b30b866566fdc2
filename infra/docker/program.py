"""The Pulumi program of the docker target: the stack's plan as pulumi-docker resources.

`define_stack(topology)` creates, in the current Pulumi stack:

- the stack's secrets (`pulumi_random.RandomPassword`, alphanumeric like the local
  target's, wrapped in `Output.secret` so every input built from them stays secret);
- one private bridge network with a fixed subnet (`infra.docker.layout`);
- the images, built (`docker.Image`, not pushed) from the stack's Debian base in
  the build contexts `infra.docker.build_contexts` writes (`infra.docker.images`);
  only Grafana's upstream image is pulled (`RemoteImage`);
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

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pulumi
import pulumi_docker as docker
import pulumi_random as random

from infra.docker import build_contexts
from infra.docker.layout import LABEL_HOST, LABEL_SERVICE, LABEL_STACK
from infra.docker.services import ALL_SECRET_NAMES, plan
from infra.docker.specs import ContainerSpec, FileSpec, StackPlan
from infra.topology import Topology

#: The image a host's sandbox runs, and what it runs: nothing, forever.
SANDBOX = "sandbox"
SANDBOX_COMMAND = ("sleep", "infinity")
#: Label carrying an image's content digest: a new value replaces the containers that
#: run it (a rebuilt image keeps its tag, so the tag alone would not).
LABEL_IMAGE_DIGEST = "civicpulse.image-digest"
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


def define_stack(topology: Topology, publish_monitoring: bool | None = None,
                 contexts: Mapping[str, Path] | None = None, grafana: bool = True
                 ) -> DockerStack:
    """Create every resource of the stack in the current Pulumi program.

    `contexts`: the images' build contexts (image key → directory); by default they
    are written now (`infra.docker.build_contexts.prepare`). `grafana=False` leaves
    out the one pulled image.
    """
    if publish_monitoring is None:
        publish_monitoring = bool(pulumi.Config().get_bool("publish_monitoring"))
    stack_plan = plan(topology, publish_monitoring=publish_monitoring, grafana=grafana)
    if contexts is None:
        contexts = build_contexts.prepare(topology, stack_plan.images)
    digests = build_contexts.digests(stack_plan.images, contexts)
    layout = stack_plan.layout
    stack = topology.stack

    needed = sorted({n for c in stack_plan.containers for n in c.secret_names})
    unknown = [n for n in needed if n not in ALL_SECRET_NAMES]
    if unknown:
        raise ValueError(f"templates read secrets the stack does not have: {unknown}")
    secrets = _secrets([n for n in ALL_SECRET_NAMES if n in needed])

    # The stack's network is internal: Docker gives it no way out. Docker publishes
    # no port from an internal network either, so the hosts with a published port
    # (nginx; Prometheus and Grafana with publish_monitoring) also join a small edge
    # network that exists only for that. Neither is masqueraded and the engine
    # leaves ip_forward alone (0 here): nothing is routed off the machine.
    network = docker.Network(
        "network", name=layout.network, driver="bridge", internal=True,
        ipam_configs=[docker.NetworkIpamConfigArgs(subnet=layout.subnet,
                                                   gateway=layout.gateway)],
        labels=[docker.NetworkLabelArgs(label=LABEL_STACK, value=stack)])
    edge = docker.Network(
        "edge-network", name=layout.edge_network, driver="bridge",
        labels=[docker.NetworkLabelArgs(label=LABEL_STACK, value=stack)],
        opts=pulumi.ResourceOptions(depends_on=[network]))

    images: dict[str, docker.RemoteImage | docker.Image] = {}
    image_refs: dict[str, pulumi.Input[str]] = {}
    for key, spec in stack_plan.images.items():
        # Built with the daemon's own builder on the host's network: no BuildKit
        # (Debian's Docker has no buildx), and apt/pip reach what this machine reaches.
        image = docker.Image(
            f"image-{_slug(key)}", image_name=spec.name, skip_push=True,
            build=docker.DockerBuildArgs(
                context=str(contexts[key]), dockerfile=str(spec.dockerfile),
                args={**spec.args}, network="host", builder_version="BuilderV1"),
            opts=pulumi.ResourceOptions(depends_on=[images[k] for k in spec.after]))
        images[key] = image
        image_refs[spec.name] = image.image_name
    for ref in sorted({c.image for c in stack_plan.containers if c.pulled}):
        remote = docker.RemoteImage(f"image-{_slug(ref)}", name=ref, keep_locally=True)
        images[ref] = remote
        image_refs[ref] = remote.image_id
    sandbox_image = stack_plan.images[SANDBOX]
    digest_of = {spec.name: digests[key] for key, spec in stack_plan.images.items()}

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
            f"sandbox-{host.name}", name=host.sandbox, image=image_refs[sandbox_image.name],
            hostname=host.name, command=list(SANDBOX_COMMAND),
            user=f"{sandbox_image.args['SERVICE_UID']}:{sandbox_image.args['SERVICE_UID']}",
            # The edge network first: Docker maps published ports on the network a
            # container is created with, and an internal one maps none.
            networks_advanced=[
                *([docker.ContainerNetworksAdvancedArgs(name=edge.name)] if host.ports else []),
                docker.ContainerNetworksAdvancedArgs(
                    name=network.name, aliases=[host.alias], ipv4_address=host.ip)],
            ports=[docker.ContainerPortArgs(internal=p.internal, external=p.external, ip=p.ip,
                                            protocol="tcp") for p in host.ports],
            restart=RESTART_POLICY, memory=16, memory_swap=16,
            # `sleep` as PID 1 ignores SIGTERM (no handler), and holds nothing to save.
            stop_signal="SIGKILL",
            labels=[*_labels(stack, host.name),
                    docker.ContainerLabelArgs(label="civicpulse.role", value="sandbox"),
                    docker.ContainerLabelArgs(label=LABEL_IMAGE_DIGEST,
                                              value=digest_of[sandbox_image.name])],
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
                               sandboxes[spec.host], volumes, secrets,
                               digest_of.get(spec.image, ""), result,
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
    if digest:
        labels.append(docker.ContainerLabelArgs(label=LABEL_IMAGE_DIGEST, value=digest))
    check = spec.healthcheck
    return docker.Container(
        f"{spec.host}-{_slug(spec.service)}", name=name, image=image,
        # The host's network namespace: its alias, address and published ports.
        network_mode=sandbox.id.apply(lambda sandbox_id: f"container:{sandbox_id}"),
        entrypoints=list(spec.entrypoint) if spec.entrypoint is not None else None,
        command=list(spec.command) or None,
        envs=envs or None,
        user=spec.user,
        working_dir=spec.workdir,
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
        # Docker's init (tini) as PID 1, in supervisord's place: it forwards the stop
        # signal (a program that installs no handler would ignore it as PID 1) and
        # reaps orphans; when the program dies, the container does, and is restarted.
        init=True,
        stop_signal=spec.stop_signal,
        stop_timeout=spec.stop_timeout_s,
        destroy_grace_seconds=spec.stop_timeout_s,
        security_opts=["no-new-privileges=true"],
        labels=labels,
        log_driver="json-file", log_opts=LOG_OPTS,
        opts=opts)
