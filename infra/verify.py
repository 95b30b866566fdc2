"""Run the testinfra suite (tests/infra) against a deployed stack's hosts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from infra.ansible_run import ansible_env
from infra.paths import work_dir
from infra.topology import REPO_ROOT, Topology


def verify_command(topology: Topology, junit: Path | None = None) -> list[str]:
    inventory = work_dir(topology) / "inventory.yml"
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-v",
           str(REPO_ROOT / "tests" / "infra"), "--hosts=ansible://all",
           f"--ansible-inventory={inventory}", "-o", "testpaths=tests/infra"]
    if junit:
        cmd.append(f"--junitxml={junit}")
    return cmd


def verify(topology: Topology, junit: Path | None = None,
           capture: bool = False) -> subprocess.CompletedProcess[str]:
    inventory = work_dir(topology) / "inventory.yml"
    if not inventory.exists():
        raise FileNotFoundError(f"{inventory} does not exist: deploy stack "
                                f"{topology.stack!r} first (`invoke deploy --stack …`)")
    return subprocess.run(verify_command(topology, junit), cwd=REPO_ROOT,
                          env=ansible_env(work_dir(topology)), text=True,
                          capture_output=capture, check=False)
