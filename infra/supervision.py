"""Talk to the per-host supervisord of the local target.

Each host of a local stack runs its own supervisord (its "init"), so a host can be
stopped, inspected or restarted on its own, like a real machine. This is the one
place that knows how to drive it: the deploy, the ops commands, the GameDay target
(`infra.targets.local`) and the runbook environment all build their supervisorctl
command lines and read its status output here.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import time

from infra.paths import host_dir, supervisor_conf
from infra.topology import Topology

SUPERVISORCTL = "/usr/bin/supervisorctl"
_STATUS = re.compile(r"^(?P<name>\S+)\s+(?P<state>[A-Z]+)(?:\s+pid (?P<pid>\d+))?")


def supervisorctl_argv(topology: Topology, host: str, *args: str) -> list[str]:
    """The command line of `supervisorctl <args>` against one host's supervisord."""
    return [SUPERVISORCTL, "-c", str(supervisor_conf(topology, host)), *args]


def supervisorctl_shell(topology: Topology, host: str) -> str:
    """`supervisorctl -c <conf>` of one host, quoted for a shell (runbook steps)."""
    return shlex.join(supervisorctl_argv(topology, host))


def supervisorctl(topology: Topology, host: str, *args: str,
                  timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(supervisorctl_argv(topology, host, *args),
                          capture_output=True, text=True, timeout=timeout, check=False)


def parse_status(output: str, program: str) -> tuple[str, int | None]:
    """(state, pid) from `supervisorctl status <program>` output."""
    for line in output.splitlines():
        match = _STATUS.match(line.strip())
        if match and match["name"] in (program, f"{program}:{program}"):
            pid = int(match["pid"]) if match["pid"] else None
            return match["state"], pid
    return "UNKNOWN", None


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
