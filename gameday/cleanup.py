"""Undo whatever a GameDay left behind, then check the stack's health.

For a run that was SIGKILLed, lost its machine, or whose rollback failed. Two passes:

1. the rollback log: every entry not marked undone, newest first, through the same undo
   handlers the engine uses (`gameday.faults.base.UNDO_HANDLERS`);
2. sweeps that need no rollback log (it may be missing or torn): delete the nft table
   `inet civicpulse_gameday_<stack>` whole, kill our helper processes (fault proxies, CPU busy
   loops: found by the marker in their argv), SIGCONT every stopped process of the
   stack's services, delete balloon files at the root of every volume mounted in the
   stack's state and in the hosts' directories.

Then health: every service RUNNING under its supervisor and the app's health endpoint
answering, waited for up to `health_timeout_s`.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx

from gameday.faults import load_all
from gameday.faults.base import UNDO_HANDLERS, UndoContext, run_undo
from gameday.faults.cache_fill import delete_prefix, stack_prefix
from gameday.faults.config_push import repair_marked_configs
from gameday.faults.disk import BALLOON
from gameday.faults.pgbouncer_limit import restore_configured_limits
from gameday.rollback_log import FAILED_UNDO, UNDONE, read_rollback_logs
from infra import procfs
from infra.connections import redis_client
from infra.ops.disk import stack_mounts
from infra.paths import host_dir
from infra.stack_lock import StackLock
from infra.targets import nft, target_for
from infra.targets.base import Target
from infra.topology import Topology


@dataclass
class CleanupReport:
    rollback_log_found: bool = False
    actions: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    health: list[dict[str, Any]] = field(default_factory=list)
    healthy: bool = False

    @property
    def ok(self) -> bool:
        return not self.problems and self.healthy

    def summary(self) -> str:
        state = "healthy" if self.healthy else "NOT healthy"
        return (f"{len(self.actions)} action(s), {len(self.problems)} problem(s), "
                f"stack {state}")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def cleanup(topology: Topology, target: Target | None = None, lock_held: bool = False,
            check_health: bool = True, health_timeout_s: float = 60) -> CleanupReport:
    load_all()
    target = target or target_for(topology)
    report = CleanupReport()
    lock = None if lock_held else StackLock(topology.state_dir).acquire()
    try:
        _undo_rollback_logs(topology, target, report)
        _sweep(topology, target, report)
        if check_health:
            _check_health(topology, target, report, health_timeout_s)
        else:
            report.healthy = True
    finally:
        if lock is not None:
            lock.release()
    return report


def _undo_rollback_logs(topology: Topology, target: Target, report: CleanupReport) -> None:
    # Normally one log; two only if a run of an older version left one under the old name.
    ctx = UndoContext(topology, target)
    for rollback_log in read_rollback_logs(topology.state_dir):
        report.rollback_log_found = True
        for entry in rollback_log.pending():
            if entry.undo.get("handler") not in UNDO_HANDLERS:
                report.problems.append(f"rollback log entry {entry.id}: unknown undo handler "
                                       f"{entry.undo.get('handler')!r}")
                continue
            try:
                message = run_undo(ctx, entry.undo)
            except Exception as exc:  # noqa: BLE001 - keep going; report every failure
                rollback_log.mark(entry, FAILED_UNDO, f"{type(exc).__name__}: {exc}")
                report.problems.append(f"could not undo {entry.description}: {exc}")
                continue
            rollback_log.mark(entry, UNDONE)
            report.actions.append(f"rollback log: {entry.description} → {message}")
        if rollback_log.finish():
            report.actions.append("rollback log: everything undone; rollback log removed")


def _sweep(topology: Topology, target: Target, report: CleanupReport) -> None:
    try:
        if target.network_faults_active():
            target.remove_network_faults()
            report.actions.append("sweep: deleted nft table inet "
                                  f"{nft.table_for(topology.stack)}")
    except Exception as exc:  # noqa: BLE001
        report.problems.append(f"sweep: could not delete the nft table: {exc}")

    marker = f"civicpulse-gameday-{topology.stack}-"
    helpers = procfs.pids_with_marker(marker)
    if helpers:
        ctx = UndoContext(topology, target)
        message = UNDO_HANDLERS["kill_marked_processes"](
            ctx, {"marker": marker, "pids": helpers, "grace_s": 5})
        report.actions.append(f"sweep: {message}")

    for svc in topology.services:
        try:
            state = target.state(svc)
        except Exception as exc:  # noqa: BLE001
            report.problems.append(f"sweep: cannot query {svc.name}@{svc.host}: {exc}")
            continue
        if state.paused_pids:
            target.resume(svc, state.paused_pids)
            report.actions.append(f"sweep: SIGCONT {len(state.paused_pids)} stopped "
                                  f"process(es) of {svc.name}@{svc.host}")

    _sweep_redis(topology, report)
    try:
        report.actions += [f"sweep: {a}" for a in restore_configured_limits(topology, target)]
    except Exception as exc:  # noqa: BLE001
        report.problems.append(f"sweep: could not restore PgBouncer's max_client_conn: {exc}")
    try:
        report.actions += [f"sweep: {a}" for a in repair_marked_configs(topology)]
    except Exception as exc:  # noqa: BLE001
        report.problems.append(f"sweep: could not repair a GameDay-broken config: {exc}")

    # Balloons sit at the root of the volume they fill: any volume mounted inside the
    # stack's state (PostgreSQL's is <host>/postgresql/volume), or a host directory.
    state = topology.state_dir.resolve()
    candidates = [mount / BALLOON for mount in stack_mounts(topology)
                  if mount == state or state in mount.parents]
    for host in topology.hosts:
        base = host_dir(topology, host.name)
        candidates += [base / BALLOON, *base.glob(f"*/{BALLOON}"), *base.glob(f"*/*/{BALLOON}")]
    for balloon in dict.fromkeys(candidates):
        if balloon.is_file():
            balloon.unlink()
            report.actions.append(f"sweep: removed {balloon}")


def _sweep_redis(topology: Topology, report: CleanupReport) -> None:
    """Filler keys under the stack's GameDay prefix (redis_fill). Best effort: a Redis
    that does not answer is reported, not fatal, since every filler key has a TTL."""
    if not topology.instances("redis"):
        return
    import redis

    try:
        conn = redis_client(topology, topology.one("redis"), timeout_s=3)
        try:
            deleted = delete_prefix(conn, stack_prefix(topology.stack))
        finally:
            conn.close()
    except (redis.RedisError, OSError) as exc:
        report.actions.append(f"sweep: Redis not reachable ({type(exc).__name__}); GameDay "
                              "filler keys, if any, expire by their TTL")
        return
    if deleted:
        report.actions.append(f"sweep: deleted {deleted} GameDay filler key(s) from Redis")


def _check_health(topology: Topology, target: Target, report: CleanupReport,
                  timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    for _ in range(1000):
        rows = []
        for svc in topology.services:
            try:
                state = target.state(svc)
                rows.append({"host": svc.host, "service": svc.name, "state": state.state,
                             "ok": state.running and not state.paused_pids})
            except Exception as exc:  # noqa: BLE001
                rows.append({"host": svc.host, "service": svc.name, "state": str(exc),
                             "ok": False})
        try:
            response = httpx.get(topology.app_url.rstrip("/") + topology.workload.health_path,
                                 timeout=3)
            app_ok = response.status_code == 200
            app_state = f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            app_ok, app_state = False, type(exc).__name__
        rows.append({"host": "-", "service": "app health", "state": app_state, "ok": app_ok})
        report.health = rows
        report.healthy = all(r["ok"] for r in rows)
        if report.healthy or time.monotonic() >= deadline:
            return
        time.sleep(2)
