"""Checks before a deploy touches anything: each failure says what to do."""

from __future__ import annotations

import errno
import os
import shutil
import socket
import sys
from pathlib import Path

from infra.supervision import program_states
from infra.topology import Topology

OS_RELEASE = Path("/etc/os-release")


def _os_release() -> dict[str, str]:
    try:
        lines = OS_RELEASE.read_text().splitlines()
    except OSError:
        return {}
    pairs = (line.split("=", 1) for line in lines if "=" in line)
    return {k: v.strip('"') for k, v in pairs}


def bind_error(address: str, port: int) -> OSError | None:
    """Whether a server could listen on address:port now (None) or why not."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # The servers themselves set SO_REUSEADDR, so a TIME-WAIT left by a
    # just-destroyed stack does not block them; only a live listener does.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((address, port))
    except OSError as exc:
        return exc
    finally:
        sock.close()
    return None


def port_conflicts(topology: Topology) -> list[str]:
    """Listeners the stack needs that something else already holds."""
    problems = []
    for host in topology.hosts:
        if host.connection != "local":
            continue
        ours = {name for name, state in program_states(topology, host.name).items()
                if state in ("RUNNING", "STARTING", "BACKOFF")}
        wanted = [(svc.name, svc.address, svc.port, f"give {svc.name} another port")
                  for svc in host.services]
        if host.runs("alertmanager"):
            # The alertmanager role's webhook receiver (the lab pager).
            wanted.append(("notification_log", *topology.webhook_address,
                           "change monitoring.webhook_port"))
        for program, address, port, fix in wanted:
            if program in ours:
                continue
            error = bind_error(address, port)
            if error is None:
                continue
            if error.errno == errno.EADDRINUSE:
                problems.append(
                    f"{address}:{port} ({host.name}/{program}) is already in use by another "
                    f"process: find it with `ss -ltnp 'sport = :{port}'` and stop it, "
                    f"or {fix} in {topology.source}")
            else:
                problems.append(f"cannot bind {address}:{port} for {host.name}/{program}: "
                                f"{error.strerror}")
    return problems


def preflight(topology: Topology) -> list[str]:
    problems = []
    if os.geteuid() != 0:
        problems.append("deploy must run as root (it installs packages with apt and creates "
                        "service users): run it with sudo")
    release = _os_release()
    if release.get("ID") != "debian" and "debian" not in release.get("ID_LIKE", ""):
        problems.append(f"this target needs Debian (12 'bookworm'); {OS_RELEASE} says "
                        f"{release.get('PRETTY_NAME', 'nothing')}. Use --target docker instead")
    if not shutil.which("apt-get"):
        problems.append("apt-get not found: the local target installs services from Debian "
                        "packages")
    bin_dir = Path(sys.executable).parent
    if not (bin_dir / "ansible-playbook").exists():
        problems.append(f"ansible-playbook is not in {bin_dir}: install the tooling with "
                        "`./bootstrap` (pip install -e '.[dev]')")
    if not Path("/usr/bin/python3").exists():
        problems.append("/usr/bin/python3 is missing: `apt-get install python3 python3-apt`")
    problems += port_conflicts(topology)
    return problems
