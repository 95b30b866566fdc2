"""Run a Pulumi program in-process under Pulumi's own mocks and record what it declares.

Each resource registration is recorded as the engine would receive it: `args.inputs`
keys are the provider's camelCase wire names, nested args arrive as dicts, and secret
values arrive wrapped in Pulumi's secret signature. Used by the program's unit tests
(tests/unit/test_docker_program.py) and by the stand-in for `pulumi up` that creates
the recorded resources on a real engine (tests/docker_target/pulumi_standin.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pulumi
from pulumi.runtime import rpc
from pulumi.runtime import settings as pulumi_settings

from infra.topology import Topology

RANDOM_PASSWORD = "random:index/randomPassword:RandomPassword"
REMOTE_IMAGE = "docker:index/remoteImage:RemoteImage"


def mock_secret_value(resource_name: str) -> str:
    return f"MockSecret{resource_name.removeprefix('secret-').replace('-', '')}Value"


class RecordingMocks(pulumi.runtime.Mocks):
    """Echo inputs back as outputs; invent ids and image ids; passwords by `password`."""

    def __init__(self, password: Callable[[str, dict[str, Any]], str] | None = None) -> None:
        self.resources: list[pulumi.runtime.MockResourceArgs] = []
        self.password = password or (lambda name, _inputs: mock_secret_value(name))

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
        self.resources.append(args)
        outputs = dict(args.inputs)
        if args.typ == RANDOM_PASSWORD:
            outputs["result"] = self.password(args.name, dict(args.inputs))
        if args.typ == REMOTE_IMAGE:
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


def record(program: Callable[[], Any], stack: str, mocks: RecordingMocks
           ) -> list[pulumi.runtime.MockResourceArgs]:
    """Run `program` inside a Pulumi program under `mocks`; every registration, in order."""
    loop = install_mocks(mocks, stack)
    try:
        program()
        drain(loop)
    finally:
        close(loop)
    return mocks.resources


@dataclass(frozen=True)
class PreviewRow:
    type: str
    name: str
    #: The inputs that say what it is: image, network, ports, mounts.
    detail: str


def _detail(typ: str, inputs: dict[str, Any]) -> str:
    if typ.endswith(":Container"):
        # A pulled image is referred to by its id (the mocks make it "sha256:<name>").
        parts = [f"image {str(inputs.get('image')).removeprefix('sha256:')}"]
        if inputs.get("networkMode"):
            parts.append(f"joins {inputs['networkMode'].removeprefix('container:')}"
                         .removesuffix("-id"))
        for net in inputs.get("networksAdvanced") or []:
            parts.append(f"on {net['name']}" + (f" {net['ipv4Address']}"
                                                 if net.get("ipv4Address") else ""))
        for port in inputs.get("ports") or []:
            parts.append(f"publishes {port.get('ip')}:{int(port['external'])}")
        for mount in inputs.get("volumes") or []:
            parts.append(f"mounts {mount['volumeName']}")
        return ", ".join(parts)
    if typ.endswith(":Image"):
        build = inputs.get("build") or {}
        return f"{inputs.get('imageName')} from {build.get('dockerfile', '?')}"
    if typ.endswith(":Network"):
        subnets = [c.get("subnet") for c in inputs.get("ipamConfigs") or []]
        return (f"{inputs.get('name')}" + (" internal" if inputs.get("internal") else "")
                + (f" {', '.join(subnets)}" if subnets else ""))
    if typ.endswith(":RemoteImage"):
        return f"pulls {inputs.get('name')}"
    return str(inputs.get("name", ""))


def preview(topology: Topology, publish_monitoring: bool = False) -> list[PreviewRow]:
    """Every resource the program would create, in the order it declares them."""
    loop = install_mocks(RecordingMocks(), topology.stack)
    close(loop)
    # Imported with the mocks in place: Pulumi reads its settings at import.
    from infra.docker import build_contexts, program
    from infra.docker.services import plan

    stack_plan = plan(topology, publish_monitoring)
    contexts = build_contexts.paths(topology, stack_plan.images)
    records = record(lambda: program.define_stack(topology, publish_monitoring,
                                                  contexts=contexts),
                     topology.stack, RecordingMocks())
    rows = []
    for r in records:
        inputs, _ = unwrap(dict(r.inputs))
        rows.append(PreviewRow(type=r.typ.split(":")[-1], name=r.name,
                               detail=_detail(r.typ, inputs)))
    return rows
