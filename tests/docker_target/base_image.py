"""The stack's Debian base image, made here: no container registry is reachable.

`debootstrap --variant=minbase bookworm` from the mirror this machine's apt uses,
without the downloaded packages and lists, imported with `docker import`. The root
file system is cached as a tarball between runs (an engine with a fresh data root
imports it again in about a second).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import docker
from docker.errors import ImageNotFound

CACHE = Path("/var/cache/civicpulse-ops/bookworm-minbase.tar")
APT_SOURCES = Path("/etc/apt")


def host_debian_mirror(apt: Path = APT_SOURCES) -> str:
    """The URI this machine's apt fetches Debian bookworm from."""
    for path in sorted((apt / "sources.list.d").glob("*.sources")):
        for stanza in path.read_text().split("\n\n"):
            fields = dict(re.findall(r"^([A-Za-z-]+):\s*(.+)$", stanza, re.M))
            if "bookworm" in fields.get("Suites", "").split() and \
                    "main" in fields.get("Components", ""):
                return fields["URIs"].split()[0]
    for path in [apt / "sources.list", *sorted((apt / "sources.list.d").glob("*.list"))]:
        if path.is_file():
            for line in path.read_text().splitlines():
                match = re.match(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+bookworm\s", line)
                if match:
                    return match.group(1)
    raise RuntimeError(f"no bookworm source in {apt}/sources.list*: cannot debootstrap")


def _rootfs_tarball(log: Callable[[str], None]) -> Path:
    if CACHE.is_file():
        return CACHE
    debootstrap = shutil.which("debootstrap")
    if not debootstrap:
        raise RuntimeError("debootstrap is not installed: run ./bootstrap")
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE.parent) as tmp:
        root = Path(tmp) / "root"
        mirror = host_debian_mirror()
        log("base image: debootstrap --variant=minbase bookworm (mirror of this machine's apt)")
        subprocess.run([debootstrap, "--variant=minbase", "bookworm", str(root), mirror],
                       check=True, capture_output=True, timeout=900)
        for leftover in [*root.glob("var/cache/apt/archives/*.deb"),
                         *root.glob("var/lib/apt/lists/*")]:
            if leftover.is_file():
                leftover.unlink()
        partial = CACHE.with_suffix(".partial")
        subprocess.run(["tar", "-C", str(root), "-cf", str(partial), "."], check=True,
                       timeout=300)
        partial.rename(CACHE)
    return CACHE


def ensure_base_image(client: docker.DockerClient, name: str,
                      log: Callable[[str], None] = print) -> str:
    """`name` in the engine's store, made from debootstrap if it is not there yet."""
    try:
        client.images.get(name)
        return "present"
    except ImageNotFound:
        pass
    cached = CACHE.is_file()
    tarball = _rootfs_tarball(log)
    repository, tag = (name.rsplit(":", 1) if ":" in name.split("/")[-1]
                       else (name, "latest"))
    with tarball.open("rb") as fh:
        client.api.import_image_from_data(fh.read(), repository=repository, tag=tag)
    return "imported from cache" if cached else "debootstrapped"
