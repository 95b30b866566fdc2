"""Targets: one per kind of deployment (local, docker), each owning the lifecycle of a
stack and the runtime operations on it (see `base.Target`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from infra.targets.base import UnknownTarget

if TYPE_CHECKING:
    from infra.targets.base import Target
    from infra.topology import Topology

KINDS = ("local", "docker")


def target_for(topology: Topology, kind: str | None = None) -> Target:
    """The target of the stack: `kind` (tasks.py's `--target`) or the stack config's.

    Imported on demand: the docker target pulls in Pulumi and the local one Ansible's
    runner, and a caller needs only one of them.
    """
    kind = kind or topology.target
    if kind == "local":
        from infra.targets.local import LocalTarget

        return LocalTarget(topology)
    if kind == "docker":
        # Unit-tested against the exact docker commands and Pulumi's mocks; never run
        # end to end here (no Docker engine on our machines).
        from infra.targets.docker import DockerTarget

        return DockerTarget(topology)
    raise UnknownTarget(f"--target must be {' or '.join(KINDS)}, not {kind!r}")
