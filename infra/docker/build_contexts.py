"""The build contexts of the docker target's images, written under the stack's work dir.

What goes into a build from this machine, and never into a file of the repository:

- **apt.** When this machine runs Debian bookworm too, the runtime layer gets its apt
  sources and settings (`/etc/apt/sources.list*`, `/etc/apt/apt.conf.d`), so packages
  come from wherever this machine's apt gets them (a mirror, a proxy, a snapshot).
  Elsewhere the base image's own sources are used.
- **pip.** Python requirements are turned into wheels here, by this machine's pip with
  its own configuration (index, proxy, certificates, constraints), and the image
  installs them with `--no-index`: the build itself needs no Python index.

Contexts are rewritten only when their content changes (wheels: when the requirements
do), so a second deploy rebuilds nothing.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from infra.docker.images import ImageSpec
from infra.paths import work_dir
from infra.topology import Topology
from infra.workload import workload_dir

HOST_APT = Path("/etc/apt")
HOST_OS_RELEASE = Path("/etc/os-release")
#: Inside an image build no package may start a daemon (on the build's network).
POLICY_RC_D = ("#!/bin/sh\n# Written by CivicPulse Ops: no daemon starts during an image "
               "build.\nexit 101\n")
WHEELS_STAMP = ".requirements.sha256"


class BuildContextError(Exception):
    """A build context could not be prepared (e.g. pip could not build a wheel)."""


def contexts_root(topology: Topology) -> Path:
    return work_dir(topology) / "images"


def host_runs_bookworm(os_release: Path = HOST_OS_RELEASE) -> bool:
    try:
        fields = dict(line.split("=", 1) for line in os_release.read_text().splitlines()
                      if "=" in line)
    except OSError:
        return False
    return (fields.get("ID", "").strip('"') == "debian"
            and fields.get("VERSION_CODENAME", "").strip('"') == "bookworm")


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    path.chmod(mode)


def _sync_tree(src: Path, dest: Path, names: Iterable[str]) -> None:
    """Make `dest` hold exactly `names` from `src` (files and directories)."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for name in names:
        source = src / name
        if source.is_dir():
            shutil.copytree(source, dest / name, symlinks=False)
        elif source.is_file():
            shutil.copy2(source, dest / name)


def _runtime(directory: Path, apt: Path, bookworm: bool) -> None:
    _write(directory / "policy-rc.d", POLICY_RC_D, 0o755)
    names = ("sources.list", "sources.list.d", "apt.conf.d") if bookworm else ()
    _sync_tree(apt, directory / "host-apt", names)


def pip_wheels(requirements: tuple[str, ...], dest: Path) -> None:
    """Wheels of `requirements` and their dependencies, by this machine's pip."""
    digest = hashlib.sha256("\n".join(requirements).encode()).hexdigest()
    stamp = dest / WHEELS_STAMP
    if stamp.is_file() and stamp.read_text() == digest:
        return
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--wheel-dir", str(dest),
                           *requirements], capture_output=True, text=True, timeout=900,
                          check=False)
    if proc.returncode != 0:
        tail = "\n  ".join((proc.stderr or proc.stdout).strip().splitlines()[-10:])
        raise BuildContextError(f"pip could not build wheels for {' '.join(requirements)} "
                                f"(exit {proc.returncode}):\n  {tail}")
    stamp.write_text(digest)


def paths(topology: Topology, images: dict[str, ImageSpec]) -> dict[str, Path]:
    """Where each image's context is (written or not): image key → directory."""
    root = contexts_root(topology)
    return {key: workload_dir(topology) if spec.context == "app" else
            root / (spec.context if spec.context in ("runtime", "service") else key)
            for key, spec in images.items()}


def prepare(topology: Topology, images: dict[str, ImageSpec],
            wheels: Callable[[tuple[str, ...], Path], None] = pip_wheels,
            apt: Path = HOST_APT, bookworm: bool | None = None) -> dict[str, Path]:
    """Write every context the images need; returns image key → context directory."""
    if bookworm is None:
        bookworm = host_runs_bookworm()
    found = paths(topology, images)
    for key, spec in images.items():
        directory = found[key]
        if spec.context == "app":
            continue
        if spec.context == "runtime":
            _runtime(directory, apt, bookworm)
        elif spec.wheels:
            wheels(spec.wheels, directory / "wheels")
        else:
            (directory / "wheels").mkdir(parents=True, exist_ok=True)
    return found


#: What a build never sees (app/.dockerignore says the same for the workload).
_IGNORED_PARTS = {"__pycache__", ".pytest_cache", ".ruff_cache", ".venv", "build", "dist"}
_IGNORED_SUFFIXES = (".pyc", ".pyo", ".egg-info", ".sqlite3")


def _tree_digest(directory: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        rel = path.relative_to(directory)
        if any(part in _IGNORED_PARTS or part.endswith(_IGNORED_SUFFIXES) for part in rel.parts):
            continue
        digest.update(f"{rel}\0{path.stat().st_mode & 0o777:o}\0".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def digests(images: dict[str, ImageSpec], contexts: Mapping[str, Path]) -> dict[str, str]:
    """Each image's content digest: its Dockerfile, build arguments and context, and
    the digests of the images it builds on (a new runtime layer changes them all)."""
    result: dict[str, str] = {}
    for key, spec in images.items():
        digest = hashlib.sha256(spec.dockerfile.read_bytes())
        digest.update(repr(sorted(spec.args.items())).encode())
        digest.update(_tree_digest(contexts[key]).encode())
        for parent in spec.after:
            digest.update(result[parent].encode())
        result[key] = digest.hexdigest()
    return result
