"""The docker target's plan as data: one `ContainerSpec` per service per host.

`infra.docker.services.plan` builds it from the topology, `infra.docker.program` turns
it into Pulumi resources; nothing here knows either.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from infra.docker.images import ImageSpec
from infra.docker.layout import DockerLayout
from infra.docker.render import Rendered, repo_relative
from infra.topology import Topology


@dataclass(frozen=True)
class Healthcheck:
    test: tuple[str, ...]
    interval_s: int = 2
    timeout_s: int = 3
    retries: int = 5
    start_period_s: int = 10


@dataclass(frozen=True)
class FileSpec:
    """A file uploaded into the container before it starts."""

    path: str
    #: Where the content comes from (a template path, or what generates it).
    source: str
    #: Stack secrets the content holds: the program renders it inside Output.apply.
    secrets: tuple[str, ...]
    produce: Callable[[Mapping[str, str]], str] = field(repr=False)
    owner: str = "0"
    group: str = "0"
    mode: str = "0644"

    @classmethod
    def from_rendered(cls, path: str, rendered: Rendered, owner: str = "0",
                      group: str = "0", mode: str | None = None) -> FileSpec:
        return cls(path=path, source=repo_relative(rendered.template),
                   secrets=rendered.secrets, produce=rendered.text, owner=owner, group=group,
                   mode=mode or ("0400" if rendered.secrets else "0644"))

    def text(self, secret_values: Mapping[str, str] | None = None) -> str:
        return self.produce(dict(secret_values or {}))


@dataclass(frozen=True)
class PublishedPort:
    internal: int
    external: int
    #: Address on the Docker host: the host's loopback address from the stack config,
    #: so `topology.app_url` is the same URL on the local and docker targets.
    ip: str


@dataclass(frozen=True)
class ContainerSpec:
    host: str
    service: str
    port: int
    image: str
    #: An upstream image, pulled (Grafana); every other image is built (infra.docker.images).
    pulled: bool = False
    entrypoint: tuple[str, ...] | None = None
    command: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    #: uid:gid (numeric: uploads and `user` are resolved in the image, by number).
    user: str | None = None
    workdir: str | None = None
    healthcheck: Healthcheck | None = None
    #: Named volumes: (volume name, mount point).
    volumes: tuple[tuple[str, str], ...] = ()
    files: tuple[FileSpec, ...] = ()
    memory_mb: int = 128
    cpus: float = 0.5
    shm_mb: int | None = None
    stop_signal: str | None = None
    stop_timeout_s: int = 20
    #: Services (on any host) whose containers must be up and healthy first.
    after: tuple[str, ...] = ()
    #: Containers (by name) that must be healthy first (finer than `after`).
    after_containers: tuple[str, ...] = ()
    #: Wait for this container to be healthy before dependants are created.
    wait_healthy: bool = False
    wait_timeout_s: int = 120
    ports: tuple[PublishedPort, ...] = ()

    @property
    def secret_names(self) -> tuple[str, ...]:
        names = [n for f in self.files for n in f.secrets]
        return tuple(dict.fromkeys(names))


@dataclass(frozen=True)
class HostPlan:
    name: str
    alias: str
    sandbox: str
    ip: str
    containers: tuple[ContainerSpec, ...]

    @property
    def ports(self) -> tuple[PublishedPort, ...]:
        return tuple(p for c in self.containers for p in c.ports)


@dataclass(frozen=True)
class StackPlan:
    topology: Topology
    layout: DockerLayout
    hosts: tuple[HostPlan, ...]
    publish_monitoring: bool
    #: The images to build, in build order (infra.docker.images).
    images: dict[str, ImageSpec] = field(default_factory=dict)

    @property
    def containers(self) -> tuple[ContainerSpec, ...]:
        return tuple(c for h in self.hosts for c in h.containers)

    def container(self, host: str, service: str) -> ContainerSpec:
        for spec in self.containers:
            if spec.host == host and spec.service == service:
                return spec
        raise KeyError(f"no container for {service} on {host}")

    def name(self, spec: ContainerSpec) -> str:
        return self.layout.container(spec.host, spec.service)


def describe(spec: ContainerSpec) -> str:
    """One line for logs: what runs where."""
    cmd = shlex.join([*(spec.entrypoint or ()), *spec.command])
    return f"{spec.service}@{spec.host}: {spec.image} {cmd}".strip()
