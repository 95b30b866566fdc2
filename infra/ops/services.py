"""Service status, logs, processes and restarts.

A service's main process and continuing its frozen processes go through the stack's
target (`infra.targets.target_for`), like the GameDay engine's. The rest is the local
target's supervisord, which the Target interface has no words for: on the local
target a host's supervisord is its init, so a host whose supervisord is gone is a host
that is "down" (`HOST DOWN`; restarting a service there means booting the host:
starting supervisord, which starts every program of the host), and a restart is
`supervisorctl restart`.
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

from infra import procfs
from infra.health import Health, alive, probe
from infra.ops.outcome import OpsError, Outcome
from infra.ops.select import by_scrape_target, instances
from infra.paths import host_dir, supervisor_conf
from infra.supervision import program_states, supervisorctl, supervisord_pid
from infra.targets import target_for
from infra.topology import Service, Topology

SUPERVISORD = "/usr/bin/supervisord"
HOST_DOWN = "HOST DOWN"  # no supervisord: the whole "machine" is off


def program_state(topology: Topology, service: Service) -> str:
    if supervisord_pid(topology, service.host) is None:
        return HOST_DOWN
    return program_states(topology, service.host).get(service.name, "ABSENT")


def status(topology: Topology, service: str | None = None, host: str | None = None,
           wait_s: float = 0.0) -> Outcome:
    """Supervisor state and health probe of the selected services (all by default).

    With `wait_s`, probe again until every one is healthy or the time is up: a verify
    step after a restart needs exactly that, without a sleep.
    """
    targets = instances(topology, service, host)
    deadline = time.monotonic() + wait_s
    while True:
        health = {(s.host, s.name): probe(topology, s) for s in targets}
        if all(h.ok for h in health.values()) or time.monotonic() >= deadline:
            break
        time.sleep(1.0)
    outcome = Outcome(title=f"stack {topology.stack}",
                      columns=["host", "service", "address", "state", "health", "detail"])
    for svc in targets:
        h = health[(svc.host, svc.name)]
        outcome.rows.append([svc.host, svc.name, svc.endpoint, program_state(topology, svc),
                             "ok" if h.ok else "DOWN", h.detail])
    bad = [f"{s.name}@{s.host}" for s in targets if not health[(s.host, s.name)].ok]
    if bad:
        waited = f" after waiting {wait_s:g}s" if wait_s else ""
        outcome.fail(f"unhealthy{waited}: {', '.join(bad)}")
    return outcome


def log_path(topology: Topology, service: Service) -> Path:
    """Where supervisord writes the program's stdout and stderr."""
    return host_dir(topology, service.host) / "log" / f"{service.name}.log"


def tail_lines(path: Path, lines: int) -> list[str]:
    """The last `lines` lines of a file, reading backwards from its end (logs get big)."""
    if lines <= 0:
        return []
    with open(path, "rb") as fh:
        fh.seek(0, 2)
        pos = fh.tell()
        data = b""
        while pos > 0 and data.count(b"\n") <= lines:
            step = min(64 * 1024, pos)
            pos -= step
            fh.seek(pos)
            data = fh.read(step) + data
    return data.decode("utf-8", errors="replace").splitlines()[-lines:]


def logs(topology: Topology, service: str, host: str | None = None, lines: int = 40,
         grep: str | None = None) -> Outcome:
    """The end of the service's log on each selected host, optionally filtered."""
    if lines < 1 or lines > 10000:
        raise OpsError(f"--lines must be between 1 and 10000, not {lines}")
    try:
        pattern = re.compile(grep) if grep else None
    except re.error as exc:
        raise OpsError(f"--grep {grep!r} is not a valid regular expression: {exc}") from None
    outcome = Outcome()
    for svc in instances(topology, service, host):
        path = log_path(topology, svc)
        if not path.is_file():
            outcome.fail(f"== {svc.name}@{svc.host}: no log at {path} (is the stack deployed?)")
            continue
        # Filter over a wider window so that --grep finds matches older than --lines.
        window = tail_lines(path, max(lines, 5000) if pattern else lines)
        shown = [line for line in window if pattern is None or pattern.search(line)][-lines:]
        outcome.note(f"== {svc.name}@{svc.host}: {path} (last {len(shown)} "
                     f"{'matching ' if pattern else ''}lines)")
        outcome.notes.extend(shown)
    return outcome


def main_pid(topology: Topology, service: Service) -> int | None:
    return target_for(topology).state(service).pid


def process_list(topology: Topology, service: str, host: str | None = None) -> Outcome:
    """Every process of the service (main process and children) with its state."""
    outcome = Outcome(title=f"processes of {service}",
                      columns=["host", "service", "pid", "ppid", "state", "command"])
    for svc in instances(topology, service, host):
        pid = main_pid(topology, svc)
        if pid is None:
            outcome.fail(f"{svc.name}@{svc.host} has no running process "
                         f"(supervisor state {program_state(topology, svc)})")
            continue
        for info in procfs.tree(pid):
            outcome.rows.append([svc.host, svc.name, info.pid, info.ppid,
                                 f"{info.state} ({procfs.STATES.get(info.state, '?')})",
                                 info.command[:100]])
            if info.stopped:
                outcome.fail(f"pid {info.pid} of {svc.name}@{svc.host} is stopped (SIGSTOP "
                             "or a debugger): `restart` continues it first")
    return outcome


def start_supervisord(topology: Topology, host: str, timeout_s: float = 30) -> None:
    """Boot a host: start its supervisord, which starts every program of the host."""
    conf = supervisor_conf(topology, host)
    if not conf.is_file():
        raise OpsError(f"host {host} has no supervisord config at {conf}: the stack is not "
                       "deployed here (run `invoke deploy`)")
    subprocess.run([SUPERVISORD, "-c", str(conf)], capture_output=True, text=True,
                   timeout=timeout_s, check=False)
    deadline = time.monotonic() + timeout_s
    while supervisorctl(topology, host, "pid", timeout=10).returncode != 0:
        if time.monotonic() >= deadline:
            raise OpsError(f"supervisord of host {host} did not come up within {timeout_s:g}s;"
                           f" see {host_dir(topology, host) / 'log' / 'supervisord.log'}")
        time.sleep(0.3)


def _wait_healthy(topology: Topology, service: Service, timeout_s: float) -> Health:
    deadline = time.monotonic() + timeout_s
    while True:
        health = probe(topology, service)
        if health.ok or time.monotonic() >= deadline:
            return health
        time.sleep(0.5)


def bring_back(topology: Topology, service: Service) -> str:
    """The least invasive action that should bring the service back; says what it did."""
    if supervisord_pid(topology, service.host) is None:
        start_supervisord(topology, service.host)
        return f"host {service.host} was down: started its supervisord (and all its programs)"
    target = target_for(topology)
    frozen = target.state(service).paused_pids
    if frozen:
        target.resume(service, frozen)
        # A frozen service usually recovers by itself once continued; a restart
        # would throw away its connections and, for PostgreSQL, force crash recovery.
        if _wait_healthy(topology, service, 5).ok:
            return f"continued {len(frozen)} stopped process(es); healthy, not restarted"
    result = supervisorctl(topology, service.host, "restart", service.name, timeout=120)
    text = (result.stdout + result.stderr).strip().replace("\n", "; ")
    if result.returncode != 0 and "started" not in text:
        raise OpsError(f"supervisorctl restart {service.name} on {service.host} failed: {text}; "
                       f"read its log: python -m infra.ops logs --stack {topology.stack} "
                       f"--service {service.name} --host {service.host}")
    return f"supervisorctl restart: {text}"


def restart(topology: Topology, service: str | None, host: str | None = None,
            unhealthy_only: bool = False, wait_s: float = 30.0,
            scrape_target: str | None = None) -> Outcome:
    """Restart one service on one host (or every unhealthy instance), then wait for health.
    `scrape_target` (address:port, as an alert's instance label) names the instance
    instead of `service`/`host`."""
    if scrape_target:
        if service or host:
            raise OpsError("pass either --scrape-target or --service/--host, not both")
        found = by_scrape_target(topology, scrape_target)
        service, host = found.name, found.host
    elif not service:
        raise OpsError("restart needs --service (or --scrape-target)")
    targets = instances(topology, service, host)
    if len(targets) > 1 and not host and not unhealthy_only:
        raise OpsError(f"{service} runs on {', '.join(s.host for s in targets)}: pass --host "
                       "to restart one, or --unhealthy to restart only those that do not answer "
                       "at all (restarting all at once is an outage)")
    outcome = Outcome(title=f"restart {service}",
                      columns=["host", "service", "before", "action", "after"])
    for svc in targets:
        before = probe(topology, svc)
        if unhealthy_only and (before.ok or alive(topology, svc).ok):
            state = "ok" if before.ok else f"alive, not ready ({before.detail})"
            outcome.rows.append([svc.host, svc.name, state,
                                 "answers: left alone (a restart cures no slow dependency)",
                                 state])
            continue
        action = bring_back(topology, svc)
        after = _wait_healthy(topology, svc, wait_s)
        outcome.rows.append([svc.host, svc.name, "ok" if before.ok else f"DOWN {before.detail}",
                             action, "ok" if after.ok else f"DOWN {after.detail}"])
        if not after.ok:
            outcome.fail(f"{svc.name}@{svc.host} is still unhealthy {wait_s:g}s after the "
                         f"restart: read its log (python -m infra.ops logs --stack "
                         f"{topology.stack} --service {svc.name} --host {svc.host})")
    return outcome
