"""Service status, logs, processes and restarts, on whichever target runs the stack.

Everything done to a service goes through the stack's target (`infra.targets.target_for`),
as the GameDay engine's actions do: its health and state word, its log, its processes,
continuing its frozen processes and restarting it (`infra.targets.base.Target`). Here is
only what ops adds: which instances, waiting and retrying, and the outcome's table and
words. So `HOST DOWN` and booting a host are the local target's (a host whose
supervisord is gone), Docker's health check and `docker restart` the docker target's.
"""

from __future__ import annotations

import re
import time

from infra import procfs
from infra.health import Health
from infra.ops.outcome import OpsError, Outcome
from infra.ops.select import by_scrape_target, instances
from infra.targets import target_for
from infra.targets.base import RestartFailed, ServiceError, Target
from infra.topology import Service, Topology


def status(topology: Topology, service: str | None = None, host: str | None = None,
           wait_s: float = 0.0) -> Outcome:
    """State and health of the selected services (all by default).

    With `wait_s`, ask again until every one is healthy or the time is up: a verify
    step after a restart needs exactly that, without a sleep.
    """
    target = target_for(topology)
    selected = instances(topology, service, host)
    deadline = time.monotonic() + wait_s
    while True:
        health = {(s.host, s.name): target.health(s) for s in selected}
        if all(h.ok for h in health.values()) or time.monotonic() >= deadline:
            break
        time.sleep(1.0)
    outcome = Outcome(title=f"stack {topology.stack}",
                      columns=["host", "service", "address", "state", "health", "detail"])
    for svc in selected:
        h = health[(svc.host, svc.name)]
        outcome.rows.append([svc.host, svc.name, target.address(svc), target.state_word(svc),
                             "ok" if h.ok else "DOWN", h.detail])
    bad = [f"{s.name}@{s.host}" for s in selected if not health[(s.host, s.name)].ok]
    if bad:
        waited = f" after waiting {wait_s:g}s" if wait_s else ""
        outcome.fail(f"unhealthy{waited}: {', '.join(bad)}")
    return outcome


def logs(topology: Topology, service: str, host: str | None = None, lines: int = 40,
         grep: str | None = None) -> Outcome:
    """The end of the service's log on each selected host, optionally filtered."""
    if lines < 1 or lines > 10000:
        raise OpsError(f"--lines must be between 1 and 10000, not {lines}")
    try:
        pattern = re.compile(grep) if grep else None
    except re.error as exc:
        raise OpsError(f"--grep {grep!r} is not a valid regular expression: {exc}") from None
    target = target_for(topology)
    outcome = Outcome()
    for svc in instances(topology, service, host):
        try:
            # Filter over a wider window so that --grep finds matches older than --lines.
            log = target.logs(svc, max(lines, 5000) if pattern else lines)
        except ServiceError as exc:
            outcome.fail(f"== {svc.name}@{svc.host}: {exc}")
            continue
        shown = [line for line in log.lines if pattern is None or pattern.search(line)][-lines:]
        outcome.note(f"== {svc.name}@{svc.host}: {log.source} (last {len(shown)} "
                     f"{'matching ' if pattern else ''}lines)")
        outcome.notes.extend(shown)
    return outcome


def process_list(topology: Topology, service: str, host: str | None = None) -> Outcome:
    """Every process of the service (main process and children) with its state."""
    target = target_for(topology)
    outcome = Outcome(title=f"processes of {service}",
                      columns=["host", "service", "pid", "ppid", "state", "command"])
    for svc in instances(topology, service, host):
        pid = target.state(svc).pid
        if pid is None:
            outcome.fail(f"{svc.name}@{svc.host} has no running process "
                         f"(supervisor state {target.state_word(svc)})")
            continue
        for info in procfs.tree(pid):
            outcome.rows.append([svc.host, svc.name, info.pid, info.ppid,
                                 f"{info.state} ({procfs.STATES.get(info.state, '?')})",
                                 info.command[:100]])
            if info.stopped:
                outcome.fail(f"pid {info.pid} of {svc.name}@{svc.host} is stopped (SIGSTOP "
                             "or a debugger): `restart` continues it first")
    return outcome


def _wait_healthy(target: Target, service: Service, timeout_s: float) -> Health:
    deadline = time.monotonic() + timeout_s
    while True:
        health = target.health(service)
        if health.ok or time.monotonic() >= deadline:
            return health
        time.sleep(0.5)


def _log_hint(topology: Topology, service: Service) -> str:
    return (f"python -m infra.ops logs --stack {topology.stack} --service {service.name} "
            f"--host {service.host}")


def bring_back(target: Target, service: Service) -> str:
    """The least invasive action that should bring the service back; says what it did."""
    frozen = target.state(service).paused_pids
    if frozen:
        target.resume(service, frozen)
        # A frozen service usually recovers by itself once continued; a restart
        # would throw away its connections and, for PostgreSQL, force crash recovery.
        if _wait_healthy(target, service, 5).ok:
            return f"continued {len(frozen)} stopped process(es); healthy, not restarted"
    try:
        return target.restart(service)
    except RestartFailed as exc:
        raise OpsError(f"{exc}; read its log: {_log_hint(target.topology, service)}") from None
    except ServiceError as exc:
        raise OpsError(str(exc)) from None


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
    selected = instances(topology, service, host)
    if len(selected) > 1 and not host and not unhealthy_only:
        raise OpsError(f"{service} runs on {', '.join(s.host for s in selected)}: pass --host "
                       "to restart one, or --unhealthy to restart only those that do not answer "
                       "at all (restarting all at once is an outage)")
    target = target_for(topology)
    outcome = Outcome(title=f"restart {service}",
                      columns=["host", "service", "before", "action", "after"])
    for svc in selected:
        before = target.health(svc)
        if unhealthy_only and (before.ok or target.alive(svc).ok):
            state = "ok" if before.ok else f"alive, not ready ({before.detail})"
            outcome.rows.append([svc.host, svc.name, state,
                                 "answers: left alone (a restart cures no slow dependency)",
                                 state])
            continue
        action = bring_back(target, svc)
        after = _wait_healthy(target, svc, wait_s)
        outcome.rows.append([svc.host, svc.name, "ok" if before.ok else f"DOWN {before.detail}",
                             action, "ok" if after.ok else f"DOWN {after.detail}"])
        if not after.ok:
            outcome.fail(f"{svc.name}@{svc.host} is still unhealthy {wait_s:g}s after the "
                         f"restart: read its log ({_log_hint(topology, svc)})")
    return outcome
