"""Package the WSGI workload the app hosts run.

The app role ships the workload as one archive instead of copying the tree file by
file: one checksum decides whether anything changed (so a re-deploy is `changed=0`
and fast), and bytecode caches left by local test runs never leak into it.
"""

from __future__ import annotations

import gzip
import io
import tarfile
import tomllib
from pathlib import Path

from infra.topology import REPO_ROOT, Topology
from infra.yaml_source import ConfigError

_SKIP_DIRS = {"__pycache__", ".pytest_cache", ".ruff_cache", "build", "dist"}
_SKIP_SUFFIXES = (".pyc", ".pyo", ".egg-info")


def workload_dir(topology: Topology) -> Path:
    path = (REPO_ROOT / topology.workload.source).resolve()
    if not path.is_dir():
        raise ConfigError([f"{topology.source}: workload.source: {path} is not a directory"])
    return path


def requirements(topology: Topology) -> list[str]:
    """The workload's dependencies (requirements.txt wins over pyproject.toml)."""
    src = workload_dir(topology)
    req_txt = src / "requirements.txt"
    if req_txt.is_file():
        reqs = [line.split("#", 1)[0].strip() for line in req_txt.read_text().splitlines()]
        reqs = [r for r in reqs if r]
    elif (src / "pyproject.toml").is_file():
        project = tomllib.loads((src / "pyproject.toml").read_text()).get("project", {})
        reqs = list(project.get("dependencies", []))
    else:
        raise ConfigError([f"{topology.source}: workload.source: {src} has neither "
                           "requirements.txt nor pyproject.toml"])
    # Gunicorn serves every workload, whatever the workload itself asks for.
    if not any(r.lower().startswith("gunicorn") for r in reqs):
        reqs.append("gunicorn>=22")
    return reqs


def _included(path: Path, root: Path) -> bool:
    rel = path.relative_to(root)
    if any(part in _SKIP_DIRS or part.endswith(_SKIP_SUFFIXES) for part in rel.parts):
        return False
    return not path.name.endswith(_SKIP_SUFFIXES)


def build_archive(topology: Topology, dest: Path) -> Path:
    """A byte-for-byte reproducible tar.gz of the workload source (fixed mtimes/owners)."""
    src = workload_dir(topology)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(p for p in src.rglob("*") if p.is_file() and _included(p, src)):
            info = tarfile.TarInfo(str(path.relative_to(src)))
            data = path.read_bytes()
            info.size = len(data)
            info.mode = 0o644
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data))
    packed = gzip.compress(buf.getvalue(), mtime=0)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if not dest.exists() or dest.read_bytes() != packed:
        dest.write_bytes(packed)
    return dest
