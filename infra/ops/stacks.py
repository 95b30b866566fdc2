"""Find a stack by name, including stacks deployed from a file outside infra/stacks/.

Runbook steps say `--stack "$CP_STACK"`, and the GameDay runner sets CP_STACK to the
stack's *name*. A throwaway stack (`itest`, a developer's copy) is deployed from a
file elsewhere, so its name alone is not in `infra/stacks/`. Its deploy left a record
of where the file was: the generated inventory's first line
("# Generated from <path> by infra/inventory.py"). We load that file if it still
exists and still names the same stack; otherwise the error lists what is known.
"""

from __future__ import annotations

import re
from pathlib import Path

from infra.topology import STATE_ROOT, Topology, load_stack
from infra.yaml_source import ConfigError

_GENERATED_FROM = re.compile(r"^# Generated from (?P<path>.+?) by infra/inventory\.py")


def deployed_source(name: str, state_root: Path = STATE_ROOT) -> Path | None:
    """The stack file the stack `name` was last deployed from, if it still exists."""
    record = state_root / name / "work" / "inventory.yml"
    try:
        with open(record, encoding="utf-8") as fh:
            first = fh.readline()
    except OSError:
        return None
    match = _GENERATED_FROM.match(first)
    if match and Path(match["path"]).is_file():
        return Path(match["path"])
    return None


def resolve_stack(name_or_path: str, state_root: Path = STATE_ROOT) -> Topology:
    """`load_stack`, falling back to the file a deployed stack of that name came from."""
    try:
        return load_stack(name_or_path)
    except ConfigError as exc:
        is_name = re.fullmatch(r"[a-z][a-z0-9-]{0,30}", name_or_path) is not None
        source = deployed_source(name_or_path, state_root) if is_name else None
        if source is None:
            raise
        topology = load_stack(source)
        if topology.stack != name_or_path:
            raise ConfigError([*exc.problems, f"{source} (recorded by the last deploy of "
                               f"{name_or_path!r}) now defines stack {topology.stack!r}"]
                              ) from None
        return topology
