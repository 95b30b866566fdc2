"""Target drivers: how the engine acts on a deployed stack (see `base.Target`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from infra.targets.base import Target
    from infra.topology import Topology


def target_for(topology: Topology) -> Target:
    """The driver for the stack's target."""
    if topology.target == "local":
        from infra.targets.local import LocalTarget

        return LocalTarget(topology)
    if topology.target == "docker":
        # Unit-tested against the exact docker commands; never run end to end here
        # (no Docker engine on our machines).
        from infra.targets.docker import DockerTarget

        return DockerTarget(topology)
    raise NotImplementedError(
        f"no GameDay driver for target {topology.target!r} yet; implement "
        "infra.targets.base.Target for it (infra/targets/local.py is the model)")
