"""A stand-in for `pulumi up` / `pulumi destroy`: the Pulumi program's resources, on a real engine.

The Pulumi CLI and its docker provider cannot be installed on our machines, so the
engine that would turn the program's resources into containers cannot run here. This
module plays its part for the tests: it evaluates the real program
(`infra.docker.program.define_stack`) under Pulumi's in-process mocks, takes every
resource registration exactly as the engine would receive it (type, name, inputs in
the provider's wire names), and creates those resources with the Docker SDK for
Python, translating each input field by field as pulumi-docker documents it
(https://www.pulumi.com/registry/packages/docker/api-docs/container/ and
.../image/, .../network/, .../volume/). A resource type or an input it does not know
raises `UnsupportedInput`: the test fails instead of silently skipping what the
program asked for. The random provider's passwords are generated here too (the mock
answers `RandomPassword` with a real random value), and written where the rest of
the tooling reads the stack's secrets, as `infra.targets.docker_lifecycle` does after
a real `pulumi up`.

What this does not verify: the Pulumi engine and the provider themselves (diffs,
replacements, state), which only a real `pulumi up` exercises.
"""

from __future__ import annotations

import io
import re
import secrets
import string
import tarfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
from docker.errors import APIError, NotFound

from infra.docker.preview import (
    RANDOM_PASSWORD,
    RecordingMocks,
    close,
    install_mocks,
    record,
    unwrap,
)

# The program module must be imported with mocks in place (Pulumi reads its settings then).
close(install_mocks(RecordingMocks(), "standin"))

from infra.docker import program  # noqa: E402
from infra.docker.layout import LABEL_STACK  # noqa: E402
from infra.targets.docker_lifecycle import write_secret_files  # noqa: E402
from infra.topology import Topology  # noqa: E402

NETWORK = "docker:index/network:Network"
VOLUME = "docker:index/volume:Volume"
IMAGE = "docker:index/image:Image"
REMOTE_IMAGE = "docker:index/remoteImage:RemoteImage"
CONTAINER = "docker:index/container:Container"
MB = 1024 * 1024


class UnsupportedInput(Exception):
    """The program asked for something this stand-in does not translate."""


class StandinError(Exception):
    """Creating a resource failed on the engine."""


@dataclass
class Resource:
    typ: str
    name: str
    inputs: dict[str, Any]
    #: What the provider answers that the program reads back (a password's `result`).
    outputs: dict[str, Any] = field(default_factory=dict)


@dataclass
class Applied:
    """What the stand-in created, with timings for the closing note."""

    images: dict[str, float] = field(default_factory=dict)
    containers: list[str] = field(default_factory=list)
    #: Seconds from the first container's start to the last `wait` satisfied.
    start_to_healthy_s: float = 0.0
    secrets: dict[str, str] = field(default_factory=dict, repr=False)


def real_password(inputs: dict[str, Any]) -> str:
    """What the random provider's RandomPassword generates for these inputs
    (alphanumeric: the program asks for no special characters)."""
    if inputs.get("special"):
        raise ValueError("RandomPassword with special=true: the stand-in only makes "
                         "alphanumeric passwords, as the program asks")
    length = int(inputs.get("length", 32))
    alphabet = string.ascii_letters + string.digits
    while True:
        value = "".join(secrets.choice(alphabet) for _ in range(length))
        if sum(c.isdigit() for c in value) >= int(inputs.get("minNumeric", 0)):
            return value


def evaluate(topology: Topology, contexts: dict[str, Path] | None = None,
             publish_monitoring: bool = False, grafana: bool = True) -> list[Resource]:
    """The program's resources in registration (dependency) order, secrets unwrapped."""
    generated: dict[str, str] = {}

    def password(name: str, inputs: dict[str, Any]) -> str:
        generated[name] = real_password(inputs)
        return generated[name]

    records = record(lambda: program.define_stack(topology, publish_monitoring=publish_monitoring,
                                                  contexts=contexts, grafana=grafana),
                     topology.stack, RecordingMocks(password=password))
    resources = [Resource(r.typ, r.name, unwrap(dict(r.inputs))[0]) for r in records]
    for resource in resources:
        if resource.typ == RANDOM_PASSWORD:
            # The provider's output, which the engine would keep in the stack's state.
            resource.outputs["result"] = generated[resource.name]
    return resources


def in_dependency_order(topology: Topology, resources: list[Resource]) -> list[Resource]:
    """The order the engine would create them in.

    Pulumi's SDK registers a resource as soon as its inputs resolve, so the records
    come in no dependency order, and the mocks are not told a resource's `depends_on`.
    The program declares that order from its plan (images FROM their parents,
    containers after the containers they wait for: `program._order`), so it is read
    from there: networks and volumes, images, sandboxes, then containers.
    """
    stack_plan = program.plan(topology)
    image_rank = {spec.name: i for i, spec in enumerate(stack_plan.images.values())}
    container_rank = {stack_plan.name(spec): i for i, (spec, _) in
                      enumerate(program._order(stack_plan.containers, stack_plan.name))}
    sandboxes = {h.sandbox for h in stack_plan.hosts}

    def rank(item: tuple[int, Resource]) -> tuple[int, int]:
        index, resource = item
        if resource.typ in (NETWORK, VOLUME, RANDOM_PASSWORD):
            return (0, index)
        if resource.typ in (IMAGE, REMOTE_IMAGE):
            return (1, image_rank.get(resource.inputs.get("imageName"), len(image_rank)))
        name = resource.inputs.get("name")
        if name in sandboxes:
            return (2, index)
        if name not in container_rank:
            raise UnsupportedInput(f"container {name}: not in the program's plan")
        return (3, container_rank[name])

    return [r for _, r in sorted(enumerate(resources), key=rank)]


class _Fields:
    """Takes a resource's inputs one by one; whatever is left over is unsupported."""

    def __init__(self, resource: Resource, ignored: tuple[str, ...] = ()) -> None:
        self.resource = resource
        self.left = {k: v for k, v in resource.inputs.items() if k not in ignored}

    def take(self, key: str, default: Any = None) -> Any:
        return self.left.pop(key, default)

    def done(self) -> None:
        if self.left:
            raise UnsupportedInput(f"{self.resource.typ} {self.resource.name}: inputs the "
                                   f"stand-in does not translate: {sorted(self.left)}")


def _duration_ns(value: str | None) -> int | None:
    """pulumi-docker's Go durations ("5s", "1m30s", "250ms") in nanoseconds."""
    if not value:
        return None
    units = {"h": 3600e9, "m": 60e9, "s": 1e9, "ms": 1e6, "us": 1e3, "ns": 1}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|ns|h|m|s)", value)
    if not parts or "".join(n + u for n, u in parts) != value:
        raise UnsupportedInput(f"duration {value!r}")
    return int(sum(float(n) * units[u] for n, u in parts))


def _int(value: Any) -> int | None:
    """Numbers arrive as floats on Pulumi's wire (JSON); the engine wants integers."""
    return None if value is None else int(value)


def _labels(items: list[dict[str, str]] | None) -> dict[str, str]:
    return {item["label"]: item["value"] for item in items or []}


def _upload_tar(uploads: list[dict[str, Any]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for item in uploads:
            for key in item:
                if key not in ("file", "content", "permissions", "owner", "group"):
                    raise UnsupportedInput(f"upload input {key!r} ({item.get('file')})")
            data = str(item["content"]).encode()
            info = tarfile.TarInfo(str(item["file"]).lstrip("/"))
            info.size = len(data)
            info.mode = int(str(item.get("permissions") or "0644"), 8)
            info.uid = int(item.get("owner") or 0)
            info.gid = int(item.get("group") or 0)
            info.mtime = int(time.time())
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class Standin:
    """Creates the recorded resources on the engine `client` talks to."""

    def __init__(self, client: docker.DockerClient, log: Callable[[str], None] = print,
                 base_url: str | None = None) -> None:
        self.client = client
        self.log = log
        #: The engine's URL, for a client per parallel build (None: build one by one).
        self.base_url = base_url
        #: The mock's resource ids (what `network_mode=container:<id>` names) → real ids.
        self.ids: dict[str, str] = {}

    def up(self, topology: Topology, resources: list[Resource]) -> Applied:
        applied = Applied()
        first_start: float | None = None
        ordered = in_dependency_order(topology, resources)
        self._build_images(topology, [r for r in ordered if r.typ == IMAGE], applied)
        for resource in ordered:
            if resource.typ in (RANDOM_PASSWORD, IMAGE):
                continue
            handler = {NETWORK: self._network, VOLUME: self._volume,
                       REMOTE_IMAGE: self._remote_image, CONTAINER: self._container}.get(
                           resource.typ)
            if handler is None:
                raise UnsupportedInput(f"resource type {resource.typ} ({resource.name})")
            started = time.monotonic()
            if resource.typ == CONTAINER and first_start is None:
                first_start = started
            handler(resource)
            if resource.typ == CONTAINER:
                applied.containers.append(resource.inputs["name"])
        if first_start is not None:
            applied.start_to_healthy_s = time.monotonic() - first_start
        applied.secrets = {r.name.removeprefix("secret-").replace("-", "_"): r.outputs.get("result")
                           for r in resources if r.typ == RANDOM_PASSWORD}
        return applied

    def _build_images(self, topology: Topology, images: list[Resource], applied: Applied
                      ) -> None:
        """Build every image, those whose parents are built side by side (the engine
        runs independent resources in parallel too), each on a client of its own."""
        stack_images = program.plan(topology).images
        parents = {spec.name: {stack_images[key].name for key in spec.after}
                   for spec in stack_images.values()}
        built: set[str] = set()
        pending = list(images)
        with ThreadPoolExecutor(max_workers=3 if self.base_url else 1) as pool:
            while pending:
                ready = [r for r in pending
                         if parents.get(r.inputs.get("imageName"), set()) <= built]
                if not ready:
                    raise StandinError("images wait for each other: "
                                       f"{[r.inputs.get('imageName') for r in pending]}")
                for resource, seconds in zip(ready, pool.map(self._timed_image, ready),
                                             strict=True):
                    applied.images[resource.inputs["imageName"]] = seconds
                    built.add(resource.inputs["imageName"])
                pending = [r for r in pending if r not in ready]

    def _timed_image(self, resource: Resource) -> float:
        started = time.monotonic()
        api = (docker.APIClient(base_url=self.base_url, timeout=900) if self.base_url
               else self.client.api)
        self._image(resource, api)
        return time.monotonic() - started

    # --- one translation per resource type ----------------------------------------
    def _network(self, resource: Resource) -> None:
        f = _Fields(resource)
        ipam = [docker.types.IPAMPool(subnet=c["subnet"], gateway=c.get("gateway"))
                for c in f.take("ipamConfigs", [])]
        name = f.take("name")
        kwargs = dict(driver=f.take("driver", "bridge"), internal=bool(f.take("internal", False)),
                      labels=_labels(f.take("labels")),
                      ipam=docker.types.IPAMConfig(pool_configs=ipam) if ipam else None)
        f.done()
        self.ids[f"{resource.name}-id"] = self.client.networks.create(name, **kwargs).id

    def _volume(self, resource: Resource) -> None:
        f = _Fields(resource)
        name = f.take("name")
        labels = _labels(f.take("labels"))
        f.done()
        try:
            volume = self.client.volumes.get(name)
        except NotFound:
            volume = self.client.volumes.create(name, labels=labels)
        self.ids[f"{resource.name}-id"] = volume.id

    def _image(self, resource: Resource, api: docker.APIClient) -> None:
        f = _Fields(resource, ignored=("buildOnPreview",))
        name = f.take("imageName")
        if not f.take("skipPush", False):
            raise UnsupportedInput(f"{resource.name}: skipPush=false (no registry to push to)")
        build = dict(f.take("build") or {})
        f.done()
        b = _Fields(Resource(IMAGE, f"{resource.name}.build", build))
        context = b.take("context")
        dockerfile = b.take("dockerfile")
        args = b.take("args") or {}
        network = b.take("network")
        if b.take("builderVersion", "BuilderV1") != "BuilderV1":
            raise UnsupportedInput(f"{resource.name}: only the classic builder (BuilderV1)")
        b.done()
        self.log(f"image {name}: building")
        started = time.monotonic()
        output = []
        try:
            for chunk in api.build(path=context, dockerfile=dockerfile, tag=name,
                                               buildargs=args, network_mode=network, rm=True,
                                               forcerm=True, decode=True):
                if "error" in chunk:
                    raise StandinError(f"image {name}: {chunk['error'].strip()}\n"
                                       + "".join(output[-30:]))
                output.append(chunk.get("stream", ""))
        except APIError as exc:
            raise StandinError(f"image {name}: {exc}") from None
        cached = sum("Using cache" in line for line in output)
        steps = sum(line.startswith("Step ") for line in output)
        self.log(f"image {name}: built in {time.monotonic() - started:.1f}s "
                 f"({cached}/{steps} steps cached)")
        self.ids[f"{resource.name}-id"] = name

    def _remote_image(self, resource: Resource) -> None:
        # Never pulled here: no registry is reachable, and no traffic may leave the
        # machine. The caller leaves pulled images out unless they are present.
        f = _Fields(resource, ignored=("keepLocally",))
        name = f.take("name")
        f.done()
        try:
            self.client.images.get(name)
        except NotFound:
            raise StandinError(f"image {name} is not in the engine's store; the stand-in "
                               "never pulls") from None

    def _container(self, resource: Resource) -> None:
        f = _Fields(resource)
        name = f.take("name")
        image = f.take("image")
        host_config: dict[str, Any] = {}
        create: dict[str, Any] = dict(
            image=image, name=name, hostname=f.take("hostname"), user=f.take("user"),
            working_dir=f.take("workingDir"), entrypoint=f.take("entrypoints"),
            command=f.take("command"), environment=f.take("envs"),
            labels=_labels(f.take("labels")), stop_signal=f.take("stopSignal"),
            stop_timeout=_int(f.take("stopTimeout")), detach=True)
        f.take("destroyGraceSeconds")  # used by `down`, like the provider's delete
        mode = f.take("networkMode")
        if mode:
            kind, _, target = mode.partition(":")
            host_config["network_mode"] = f"container:{self.ids[target]}" if kind == "container" \
                else mode
        networks = f.take("networksAdvanced") or []
        ports = {}
        for port in f.take("ports") or []:
            if port.get("protocol", "tcp") != "tcp":
                raise UnsupportedInput(f"{name}: port protocol {port['protocol']}")
            ports[f"{int(port['internal'])}/tcp"] = (port.get("ip", "0.0.0.0"),
                                                     int(port["external"]))
        host_config["port_bindings"] = ports or None
        # A binding needs its port exposed too (the provider sets both from `ports`).
        create["ports"] = [int(key.split("/")[0]) for key in ports] or None
        if f.take("init"):
            host_config["init"] = True
        restart = f.take("restart")
        if restart:
            host_config["restart_policy"] = {"Name": restart}
        memory = f.take("memory")
        if memory:
            host_config["mem_limit"] = int(memory) * MB
        swap = f.take("memorySwap")
        if swap:
            host_config["memswap_limit"] = int(swap) * MB
        cpus = f.take("cpus")
        if cpus:
            host_config["nano_cpus"] = int(float(cpus) * 1e9)
        shm = f.take("shmSize")
        if shm:
            host_config["shm_size"] = int(shm) * MB
        binds = {}
        for mount in f.take("volumes") or []:
            extra = set(mount) - {"volumeName", "containerPath"}
            if extra:
                raise UnsupportedInput(f"{name}: volume inputs {sorted(extra)}")
            binds[mount["volumeName"]] = {"bind": mount["containerPath"], "mode": "rw"}
        host_config["binds"] = binds or None
        host_config["security_opt"] = f.take("securityOpts")
        log_driver = f.take("logDriver")
        if log_driver:
            host_config["log_config"] = docker.types.LogConfig(type=log_driver,
                                                               config=f.take("logOpts") or {})
        check = f.take("healthcheck")
        if check:
            c = _Fields(Resource(CONTAINER, f"{name}.healthcheck", dict(check)))
            create["healthcheck"] = docker.types.Healthcheck(
                test=c.take("tests"), interval=_duration_ns(c.take("interval")),
                timeout=_duration_ns(c.take("timeout")), retries=_int(c.take("retries")),
                start_period=_duration_ns(c.take("startPeriod")))
            c.done()
        uploads = f.take("uploads") or []
        wait = bool(f.take("wait", False))
        wait_timeout = float(f.take("waitTimeout") or 60)
        f.done()

        api = self.client.api
        networking = None
        if networks:
            first = networks[0]
            # What `docker run --network` does: the first network is the container's
            # network mode (the endpoint config alone leaves it "default").
            host_config.setdefault("network_mode", first["name"])
            networking = api.create_networking_config({first["name"]: api.create_endpoint_config(
                aliases=first.get("aliases"), ipv4_address=first.get("ipv4Address"))})
        container_id = api.create_container(
            **{k: v for k, v in create.items() if k != "detach"},
            host_config=api.create_host_config(**{k: v for k, v in host_config.items()
                                                  if v is not None}),
            networking_config=networking)["Id"]
        for extra in networks[1:]:
            api.connect_container_to_network(container_id, extra["name"],
                                             aliases=extra.get("aliases"),
                                             ipv4_address=extra.get("ipv4Address"))
        if uploads:
            # The provider uploads before the first start, as `docker cp` into a created
            # container: the files exist when the program starts.
            api.put_archive(container_id, "/", _upload_tar(uploads))
        api.start(container_id)
        self.ids[f"{resource.name}-id"] = container_id
        if wait:
            self._wait_healthy(name, container_id, wait_timeout)

    def _wait_healthy(self, name: str, container_id: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        state: dict[str, Any] = {}
        while time.monotonic() < deadline:
            state = self.client.api.inspect_container(container_id)["State"]
            health = (state.get("Health") or {}).get("Status")
            if health == "healthy":
                self.log(f"container {name}: healthy")
                return
            if state.get("Status") in ("exited", "dead"):
                break
            time.sleep(0.5)
        logs = self.client.api.logs(container_id, tail=30).decode(errors="replace")
        raise StandinError(f"container {name} not healthy within {timeout_s:g}s "
                           f"(state {state.get('Status')}, health "
                           f"{(state.get('Health') or {}).get('Status')}):\n{logs}")


def _remove_container(container: Any) -> None:
    # The provider's delete: stop with the declared grace (destroy_grace_seconds = the
    # stop timeout), then remove; a restarting or paused container is stopped too.
    grace = int(container.attrs["Config"].get("StopTimeout") or 10)
    if container.status == "paused":
        container.unpause()
    if container.status in ("running", "restarting", "paused"):
        container.stop(timeout=grace)
    container.remove(v=False)


def down(client: docker.DockerClient, stack: str, log: Callable[[str], None] = print) -> None:
    """What `pulumi destroy` removes: the stack's containers, volumes and networks."""
    selector = {"label": f"{LABEL_STACK}={stack}"}
    # Services before the sandboxes whose network namespace they share; each group in
    # parallel, as the engine deletes independent resources.
    containers = client.containers.list(all=True, filters=selector)
    sandboxes = [c for c in containers if c.labels.get("civicpulse.role") == "sandbox"]
    with ThreadPoolExecutor(max_workers=8) as pool:
        for group in ([c for c in containers if c not in sandboxes], sandboxes):
            list(pool.map(_remove_container, group))
    for volume in client.volumes.list(filters=selector):
        volume.remove()
    for network in client.networks.list(filters=selector):
        network.remove()
    log(f"stack {stack}: containers, volumes and networks removed")


def write_secrets(topology: Topology, applied: Applied) -> None:
    write_secret_files(topology, {k: v for k, v in applied.secrets.items() if v})
