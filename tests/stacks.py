"""Stack configs the tests derive from the checked-in ones."""

from __future__ import annotations

import copy
import functools
import tempfile
from pathlib import Path

import yaml

from infra.docker.services import NOT_ON_DOCKER
from infra.topology import Topology, load_stack, stack_path


def without_backups(data: dict) -> dict:
    """A stack config's data without the services the docker target does not run yet
    (the backup repository and its agent), and without hosts left empty by that."""
    data = copy.deepcopy(data)
    for name, host in list(data["hosts"].items()):
        host["services"] = [s for s in host["services"]
                            if (s if isinstance(s, str) else s["name"]) not in NOT_ON_DOCKER]
        if not host["services"]:
            del data["hosts"][name]
    data.get("sizing", {}).pop("pgbackrest", None)
    return data


@functools.cache
def docker_lab() -> Topology:
    """The lab stack as the docker target runs it (see `without_backups`)."""
    data = without_backups(yaml.safe_load(stack_path("lab").read_text()))
    path = Path(tempfile.mkdtemp(prefix="docker-lab-")) / "lab.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return load_stack(path)
