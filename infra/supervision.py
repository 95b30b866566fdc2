"""Talk to the per-host supervisord of the local target.

Each host of a local stack runs its own supervisord (its "init"), so a host can be
stopped, inspected or restarted on its own, like a real machine.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

from infra.paths import host_dir, supervisor_conf
from infra.topology import Topology

SUPERVISORCTL = "/usr/bin/supervisorctl"


def supervisorctl(topology: Topology, host: str, *args: str,
                  timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SUPERVISORCTL, "-c", str(supervisor_conf(topology, host)), *args],
                          capture_output=True, text=True, timeout=timeout, check=False)


def supervisord_pid(topology: Topology, host: str) -> int | None:
    pidfile = host_dir(topology, host) / "supervisor" / "supervisord.pid"
    try:
        pid = int(pidfile.read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def program_states(topology: Topology, host: str) -> dict[str, str]:
    """Program name → supervisor state (RUNNING, STARTING, BACKOFF, STOPPED, …)."""
    if supervisord_pid(topology, host) is None:
        return {}
    out = supervisorctl(topology, host, "status").stdout
    states = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2:
            states[parts[0]] = parts[1]
    return states


def shutdown_host(topology: Topology, host: str, timeout: float = 60) -> None:
    """Stop every program of the host, then its supervisord; SIGKILL what lingers."""
    pid = supervisord_pid(topology, host)
    if pid is None:
        return
    supervisorctl(topology, host, "shutdown", timeout=timeout)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except OSError:
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
