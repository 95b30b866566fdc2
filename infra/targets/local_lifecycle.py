"""The local target's lifecycle: deploy, inspect and destroy a stack on this machine.

Deploy = preflight → secrets → inventory + workload archive → Ansible (`site.yml`)
→ wait for real readiness. The functions report progress through callbacks so that
tasks.py can show it with rich and tests can run them silently.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from infra.ansible_run import PlaybookResult, run_playbook
from infra.health import Health, probe_all, wait_healthy
from infra.inventory import write_inventory
from infra.paths import secrets_dir, work_dir, workload_archive_path
from infra.preflight import preflight
from infra.secrets import ensure_secrets
from infra.supervision import program_states, shutdown_host
from infra.targets.base import TargetError
from infra.tls import ensure_stack_tls
from infra.topology import LOOPBACK, Host, Topology
from infra.workload import build_archive

Progress = Callable[[str], None]


class DeployError(TargetError):
    """Deploy stopped; the message says why and what to do."""


@dataclass
class DeployResult:
    playbook: PlaybookResult
    health: dict[tuple[str, str], Health]
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def healthy(self) -> bool:
        return all(h.ok for h in self.health.values())


def deploy(topology: Topology, progress: Progress | None = None,
           ansible_args: list[str] | None = None, ready_timeout_s: float = 180) -> DeployResult:
    say = progress or (lambda _msg: None)
    timings: dict[str, float] = {}
    t0 = time.monotonic()

    say("preflight: checking root, Debian, tooling and ports")
    problems = preflight(topology)
    if problems:
        raise DeployError("preflight failed, nothing was changed:\n  - " + "\n  - ".join(problems))
    timings["preflight"] = time.monotonic() - t0

    say("secrets: generating missing ones (mode 0600)")
    ensure_secrets(secrets_dir(topology))
    ensure_stack_tls(topology)
    say("inventory: deriving hosts and variables from " + str(topology.source))
    inventory = write_inventory(topology, work_dir(topology) / "inventory.yml")
    build_archive(topology, workload_archive_path(topology))

    t1 = time.monotonic()
    result = run_playbook(inventory, work_dir(topology), extra_args=ansible_args,
                          on_line=lambda kind, name: say(f"ansible {kind}: {name}"))
    timings["ansible"] = time.monotonic() - t1
    if not result.ok:
        details = "\n  ".join(result.failures[:10]) or "(see the log)"
        raise DeployError(f"Ansible failed (exit {result.returncode}); full log: {result.log}\n"
                          f"  {details}")

    t2 = time.monotonic()
    say("readiness: SQL through PgBouncer, Redis PING, HTTP through nginx, …")
    health = wait_healthy(topology, ready_timeout_s,
                          on_wait=lambda failing: say("waiting for: " + ", ".join(failing)))
    timings["readiness"] = time.monotonic() - t2
    timings["total"] = time.monotonic() - t0
    return DeployResult(playbook=result, health=health, timings=timings)


def scrape_health(topology: Topology) -> dict[str, str]:
    """Endpoint (address:port) → Prometheus' view of its scrape: up, down, or unknown."""
    try:
        resp = httpx.get(topology.url("prometheus", "/api/v1/targets?state=active"), timeout=2)
        targets = resp.json()["data"]["activeTargets"]
    except (httpx.HTTPError, ValueError, KeyError):
        return {}
    return {urlsplit(t["scrapeUrl"]).netloc: t["health"] for t in targets}


def status(topology: Topology) -> dict[str, Any]:
    """Every service with its supervisor state, probe result and scrape health."""
    health = probe_all(topology)
    scrapes = scrape_health(topology)
    rows = []
    for host in topology.hosts:
        states = program_states(topology, host.name)
        for svc in host.services:
            h = health[(host.name, svc.name)]
            rows.append({"host": host.name, "service": svc.name, "address": svc.endpoint,
                         "state": states.get(svc.name, "ABSENT"), "healthy": h.ok,
                         "detail": h.detail,
                         "scrape": scrapes.get(svc.metrics_endpoint,
                                               "-" if scrapes else "unknown")})
    return {
        "stack": topology.stack,
        "services": rows,
        "endpoints": {"app": topology.app_url, "prometheus": topology.url("prometheus"),
                      "alertmanager": topology.url("alertmanager")},
    }


def listening(topology: Topology) -> list[str]:
    """Endpoints of the stack that still accept connections."""
    endpoints = [(f"{svc.host}/{svc.name}", svc.address, port)
                 for svc in topology.services for port in sorted({svc.port, svc.metrics_port})]
    if topology.instances("alertmanager"):
        endpoints.append((f"{topology.one('alertmanager').host}/notification_log",
                          *topology.webhook_address))
    alive = []
    for name, address, port in endpoints:
        try:
            with socket.create_connection((address, port), timeout=0.5):
                alive.append(f"{name} {address}:{port}")
        except OSError:
            pass
    return alive


def runs_on_this_machine(host: Host) -> bool:
    """Local hosts, and SSH hosts whose sshd is on this machine's loopback."""
    if host.connection == "local":
        return True
    return bool(host.ssh_host) and ipaddress.ip_address(host.ssh_host) in LOOPBACK


def mounts_under(root: Path, mountinfo: Path = Path("/proc/self/mountinfo")) -> list[Path]:
    """Mount points below `root` (not `root` itself: a state directory may be a disk of
    its own), deepest first, the order to unmount them in."""
    root = Path(os.path.realpath(root))
    found = []
    try:
        lines = mountinfo.read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    for line in lines:
        fields = line.split()
        if len(fields) < 5:
            continue
        # mountinfo escapes space, tab, newline and backslash as octal (\040 …).
        point = Path(re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4]))
        if root in point.parents:
            found.append(point)
    return sorted(set(found), key=lambda p: len(p.parts), reverse=True)


def loop_devices_backed_by(root: Path, sys_block: Path = Path("/sys/block")) -> list[str]:
    """Loop devices whose backing file lies below `root` (e.g. a volume's image)."""
    root = Path(os.path.realpath(root))
    devices = []
    for backing in sorted(sys_block.glob("loop*/loop/backing_file")):
        try:
            image = Path(backing.read_text(encoding="utf-8").strip().removesuffix(" (deleted)"))
        except OSError:
            continue
        if root in image.parents:
            devices.append(f"/dev/{backing.parent.parent.name}")
    return devices


def release_volumes(topology: Topology, say: Progress, attempts: int = 10) -> list[str]:
    """Unmount every volume inside the stack's state and detach its loop devices.

    Called once the services are stopped. Returns what could not be released (the
    state must not be deleted then: rmtree would descend into a mounted volume).
    """
    problems = []
    for point in mounts_under(topology.state_dir):
        say(f"unmounting {point}")
        error = ""
        # Bounded retries: a process that just exited may still hold the volume, and
        # the same point may be mounted more than once.
        for attempt in range(attempts):
            if not os.path.ismount(point):
                break
            done = subprocess.run(["umount", str(point)], capture_output=True, text=True,
                                  timeout=60, check=False)
            if done.returncode != 0:
                error = done.stderr.strip()
                time.sleep(0.5 * (attempt + 1))
        if os.path.ismount(point):
            problems.append(f"{point} is still mounted ({error}): see who holds it with "
                            f"`fuser -vm {point}`, stop that, and run destroy again")
    # `mount -o loop` sets autoclear, so unmounting frees the device; detach any that
    # was set up otherwise (or survived a failed unmount).
    for device in loop_devices_backed_by(topology.state_dir):
        say(f"detaching {device}")
        done = subprocess.run(["losetup", "--detach", device], capture_output=True, text=True,
                              timeout=60, check=False)
        if done.returncode != 0 and device in loop_devices_backed_by(topology.state_dir):
            problems.append(f"loop device {device} still attached: {done.stderr.strip()}")
    return problems


def destroy(topology: Topology, progress: Progress | None = None) -> list[str]:
    """Stop every host, release its volumes, remove the stack's state.

    Returns what is left: endpoints still listening, and volumes still mounted (then
    the state directory is kept, so that a second destroy can finish the job).
    """
    say = progress or (lambda _msg: None)
    for host in topology.hosts:
        if not runs_on_this_machine(host):
            say(f"skipping host {host.name}: reached over SSH at {host.ssh_host}; stop it "
                "there (its supervisord: supervisorctl ... shutdown)")
            continue
        say(f"stopping host {host.name} ({host.address})")
        shutdown_host(topology, host.name)
    left = release_volumes(topology, say)
    if left:
        say(f"keeping {topology.state_dir}: a volume inside it is still in use")
        return listening(topology) + left
    say(f"removing {topology.state_dir}")
    shutil.rmtree(topology.state_dir, ignore_errors=True)
    return listening(topology)
