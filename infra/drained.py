"""Which app hosts are drained (kept out of nginx's upstream): `<state_dir>/ops/drained.json`.

This module only reads and writes that file (`infra.paths.drained_path`) and depends on
nothing but the topology.
It sits below both its writer (`infra.ops.drain`) and its reader `infra.inventory`,
which feeds `nginx_drained_hosts` to the nginx role (a later deploy must keep a
drained host drained, not silently undo it).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from infra.paths import drained_path
from infra.topology import Topology


def drained_hosts(topology: Topology) -> list[str]:
    """The drained app hosts that still exist in the stack config, sorted."""
    path = drained_path(topology)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: unreadable drained-hosts file ({exc}); fix or delete "
                         "it (it only lists host names)") from None
    hosts = data.get("drained", []) if isinstance(data, dict) else []
    apps = {s.host for s in topology.instances("app")}
    return sorted(h for h in hosts if isinstance(h, str) and h in apps)


def write_drained(topology: Topology, hosts: list[str]) -> Path:
    """Replace the drained set atomically (a crash never leaves half a file)."""
    path = drained_path(topology)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"drained": sorted(set(hosts))}, indent=2) + "\n",
                   encoding="utf-8")
    os.replace(tmp, path)
    return path
