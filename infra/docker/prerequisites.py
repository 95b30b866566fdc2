"""What the docker target needs on this machine: the Pulumi CLI, a Docker engine and
the `docker` CLI, each missing one reported with how to install it."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

DOCKER_SOCKET = Path("/var/run/docker.sock")
INSTALL_PULUMI = ("install the Pulumi CLI: `curl -fsSL https://get.pulumi.com | sh` and add "
                  "~/.pulumi/bin to PATH (https://www.pulumi.com/docs/install/); the "
                  "Python SDKs in the venv are not enough, the CLI runs the engine and "
                  "downloads the docker and random provider plugins")
INSTALL_DOCKER = ("install Docker Engine (https://docs.docker.com/engine/install/debian/: "
                  "`apt-get install docker-ce docker-ce-cli containerd.io`, or Debian's "
                  "`apt-get install docker.io`), start it (`systemctl start docker`, or "
                  "`dockerd &` where there is no systemd) and check that `docker info` works "
                  "for this user (root, or a member of the `docker` group)")


def _docker_endpoint() -> str:
    return os.environ.get("DOCKER_HOST") or f"unix://{DOCKER_SOCKET}"


def _engine_reachable(endpoint: str) -> str | None:
    """None if something answers at the engine endpoint, else why not."""
    parsed = urlparse(endpoint)
    try:
        if parsed.scheme == "unix":
            path = Path(parsed.path)
            if not path.exists():
                return f"{path} does not exist"
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(2)
                sock.connect(str(path))
        elif parsed.scheme in ("tcp", "http", "https"):
            with socket.create_connection((parsed.hostname or "localhost",
                                           parsed.port or 2375), timeout=2):
                pass
        else:
            return None  # ssh:// and the like: let `docker info` decide
    except OSError as exc:
        return f"cannot connect to {endpoint}: {exc.strerror or exc}"
    return None


def prerequisite_problems(run: Callable[..., subprocess.CompletedProcess] = subprocess.run
                          ) -> list[str]:
    """What this machine lacks for the docker target, each with how to fix it."""
    problems = []
    if not shutil.which("pulumi"):
        problems.append(f"the Pulumi CLI (`pulumi`) is not on PATH: {INSTALL_PULUMI}")
    endpoint = _docker_endpoint()
    why = _engine_reachable(endpoint)
    if why:
        problems.append(f"no Docker engine at {endpoint} ({why}): {INSTALL_DOCKER}")
    elif shutil.which("docker"):
        try:
            info = run(["docker", "info", "--format", "{{.ServerVersion}}"],
                       capture_output=True, text=True, timeout=20, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            problems.append(f"`docker info` failed ({exc}): {INSTALL_DOCKER}")
        else:
            if info.returncode != 0:
                detail = (info.stderr or info.stdout).strip().splitlines()
                problems.append(f"`docker info` failed ({detail[-1] if detail else 'no output'}"
                                f"): {INSTALL_DOCKER}")
    else:
        # The provider talks to the socket itself; the CLI is for the GameDay driver.
        problems.append("the `docker` CLI is not on PATH (the GameDay driver of the docker "
                        "target uses it): install docker-ce-cli or docker.io")
    return problems
