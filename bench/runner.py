"""One benchmark run: start the SQLite peers, measure the bounds, sweep N, report."""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import httpx

from bench.bounds import BoundResult, run_pgbench, run_wrk
from bench.cpu_meter import CpuMeter
from bench.load import REPORT_PATTERN_PATH, LoadSpec, run_load
from bench.options import READ_MIX, REPORT_PATTERN, WRITE, BenchError, BenchOptions, make_options
from bench.peers import SQLITE_MODES, SqlitePeer, deployed_app, reap_stale_peers
from bench.report import write_report
from bench.results import CONFIGURATIONS, BenchResult, PointResult, derive_notes
from bench.rows import PostgresCounter, RowCounter, SqliteCounter
from infra.paths import host_dir
from infra.procfs import listener_pids
from infra.topology import Topology

#: Loopback addresses of the SQLite peers (outside every stack's range).
PEER_ADDRESSES = {"sqlite-default": "127.0.60.1", "sqlite-tuned": "127.0.60.2",
                  "sqlite-durable": "127.0.60.3"}
#: Above this load average at the start, or this many cores of foreign CPU use on
#: average during the points, the numbers are labelled as taken under load. (The
#: load average at the end is no guide: the run itself keeps both cores busy.)
QUIET_LOADAVG = 1.5
QUIET_OTHER_CORES = 0.25
_CODES = {"stack": "s", "sqlite-default": "d", "sqlite-tuned": "t", "sqlite-durable": "f",
          "write": "w", "report-pattern": "p", "read-mix": "r"}


def default_out_dir(reports_root: Path) -> Path:
    """reports/bench-<UTC timestamp>/"""
    return reports_root / f"bench-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}"


class _Target:
    """One configuration under test: where to send load, how to count rows and CPU."""

    def __init__(self, name: str, url: str, rows: RowCounter, cpu: CpuMeter,
                 peer: SqlitePeer | None = None) -> None:
        self.name, self.url, self.rows, self.cpu, self.peer = name, url, rows, cpu, peer


def _stack_target(topology: Topology) -> _Target:
    def pids(service: str) -> list[int]:
        return [p for s in topology.instances(service)
                for p in listener_pids(s.address, s.port)]

    groups = {name: pids(name) for name in ("nginx", "app", "pgbouncer", "postgresql",
                                            "redis")}
    # Every host's supervisord relays its programs' stdout/stderr (the app logs a JSON
    # line per request), so its CPU is part of the stack's cost per request.
    supervisors = []
    for host in topology.hosts:
        with contextlib.suppress(OSError, ValueError):
            pidfile = host_dir(topology, host.name) / "supervisor" / "supervisord.pid"
            supervisors.append(int(pidfile.read_text().strip()))
    return _Target("stack", topology.app_url.rstrip("/"), PostgresCounter(topology),
                   CpuMeter(groups, {"supervisord": supervisors}))


def _check_stack(topology: Topology, opts: BenchOptions) -> None:
    if topology.target != "local":
        raise BenchError(f"stack {topology.stack} uses the {topology.target} target; the "
                         "benchmark runs against the local target only")
    url = topology.url("nginx", topology.workload.health_path)
    try:
        status = httpx.get(url, timeout=5).status_code
    except httpx.HTTPError as exc:
        raise BenchError(f"stack {topology.stack} is not reachable at {url} ({exc}); "
                         f"check `invoke status --stack {topology.stack}`") from None
    if status != 200:
        raise BenchError(f"stack {topology.stack} is unhealthy ({url} → HTTP {status}); "
                         f"check `invoke status --stack {topology.stack}`")
    if REPORT_PATTERN in opts.variants:
        # A GET is answered 405 where the pattern is served and 404 where it is not.
        probe = topology.url("nginx", REPORT_PATTERN_PATH)
        if httpx.get(probe, timeout=5).status_code == 404:
            raise BenchError(
                f"stack {topology.stack} does not serve the report's pattern ({probe} → 404):"
                f" set `workload.report_pattern: true` in {topology.source} and re-deploy "
                f"(invoke deploy --stack {topology.stack}), or leave out {REPORT_PATTERN}")


def _measure_point(target: _Target, variant: str, n: int, opts: BenchOptions,
                   prefix: str) -> PointResult:
    after_id = target.rows.max_user_id()
    log_offset = target.peer.log_size() if target.peer else 0
    before = target.cpu.snapshot()
    started = time.monotonic()
    load = run_load(LoadSpec(target.url, n, opts.duration_s, opts.max_requests,
                             opts.timeout_s, variant, prefix))
    wall = time.monotonic() - started
    cores = CpuMeter.cores(before, target.cpu.snapshot(), wall,
                           {"client": load.client_cpu_s})
    users, audit = target.rows.counts(prefix, after_id)
    locks = target.peer.lock_errors_since(log_offset) if target.peer else None
    return PointResult.from_load(target.name, variant, n, load, users, audit, cores, locks)


def _bounds(topology: Topology, opts: BenchOptions, rows: RowCounter, run_id: str,
            say: Callable[[str], None]) -> list[BoundResult]:
    results = []
    for clients in opts.pgbench_clients:
        prefix = f"p{run_id}.c{clients}."
        after_id = rows.max_user_id()
        bound = run_pgbench(topology, clients, opts.duration_s, prefix)
        if bound.ok:
            bound.users, bound.audit = rows.counts(prefix, after_id)
        results.append(bound)
        say(f"bound pgbench c={clients}: {bound.per_s:.0f} tx/s {bound.note}")
    for target in ("django-404", "health"):
        for conns in opts.wrk_connections:
            bound = run_wrk(topology, conns, opts.duration_s, target)
            results.append(bound)
            say(f"bound wrk {target} c={conns}: {bound.per_s:.0f} ok/s {bound.note}")
    return results


def _stack_durability(topology: Topology) -> dict[str, Any]:
    commit = topology.sizing.postgresql.synchronous_commit
    durable = commit != "off"
    why = (f"yes: synchronous_commit={commit}, PostgreSQL fsyncs the commit's WAL before "
           "it answers" if durable else "no: synchronous_commit=off acknowledges before the "
           "WAL is flushed (up to 3 × wal_writer_delay of commits can be lost)")
    return {"durable": durable, "why": why}


def _describe_stack(topology: Topology) -> str:
    s = topology.sizing
    apps = topology.instances("app")
    return (f"nginx {topology.app_url} (rate limit {s.nginx.rate_limit_rps} r/s) → Gunicorn on "
            f"{len(apps)} app hosts × {s.app.workers} {s.app.worker_class} workers → "
            f"PgBouncer (transaction pooling, pool {s.pgbouncer.default_pool_size}) → "
            f"PostgreSQL 15 (synchronous_commit={s.postgresql.synchronous_commit}); "
            "Redis cache for reads")


def run_bench(topology: Topology, quick: bool = False, ns: str | list[int] | None = None,
              duration_s: float | None = None, out_dir: Path | None = None,
              console: Any = None, *, variants: list[str] | None = None,
              max_requests: int | None = None, timeout_s: float | None = None,
              bounds: bool = True) -> BenchResult:
    """Benchmark the deployed stack against the SQLite peers and write the report.

    Raises BenchError (before any load) for bad arguments or a stack that is not
    deployed and healthy. `console` is anything with a `print(str)` method.
    """
    opts = make_options(quick=quick, ns=ns, duration_s=duration_s, variants=variants,
                        max_requests=max_requests, timeout_s=timeout_s, bounds=bounds)
    _check_stack(topology, opts)
    app = deployed_app(topology)
    out_dir = out_dir or default_out_dir(Path("reports"))

    def say(message: str) -> None:
        if console is not None:
            console.print(message)

    for stale in reap_stale_peers():
        say(f"removed a peer left behind by a killed run: {stale}")
    run_id = secrets.token_hex(3)
    load_start = os.getloadavg()[0]
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    peers = {name: SqlitePeer(name, SQLITE_MODES[name], address, app)
             for name, address in PEER_ADDRESSES.items()}
    targets: dict[str, _Target] = {}
    try:
        for name, peer in peers.items():
            say(f"starting {name} on {peer.address} ({app.workers} workers)…")
            peer.start()
            targets[name] = _Target(name, peer.url, SqliteCounter(peer.db_path),
                                    CpuMeter({"app": [peer.proc.pid] if peer.proc else []}),
                                    peer)
        targets["stack"] = _stack_target(topology)
        for target in targets.values():
            # Not recorded: first requests pay for imports, connections, page cache.
            for variant in sorted({WRITE, *opts.variants} - {READ_MIX}):
                run_load(LoadSpec(target.url, 4, 1.0, 200, opts.timeout_s, variant,
                                  f"w{run_id}.{_CODES[target.name]}{_CODES[variant]}."))
        bound_results = (_bounds(topology, opts, targets["stack"].rows, run_id, say)
                         if opts.bounds else [])
        points = []
        turn = 0
        for n in opts.ns:
            for variant in (v for v in opts.variants if n in opts.ns_for(v)):
                shift = turn % len(CONFIGURATIONS)
                order = CONFIGURATIONS[shift:] + CONFIGURATIONS[:shift]
                turn += 1
                for name in order:
                    prefix = f"b{run_id}.{_CODES[name]}{_CODES[variant]}{n}."
                    point = _measure_point(targets[name], variant, n, opts, prefix)
                    points.append(point)
                    p99 = point.latency_ms["p99"]
                    say(f"{name:>14} {variant:<14} N={n:<4} {100 * point.success_rate:5.1f}% ok "
                        f"{point.ok_per_s:6.0f}/s p99 {p99 or 0:6.0f}ms "
                        f"rows {point.users}/{point.audit}")
                    time.sleep(opts.settle_s)
    finally:
        for target in targets.values():
            target.rows.close()
        for peer in peers.values():
            peer.remove()
    load_end = os.getloadavg()[0]
    others = [p.cpu_cores.get("other", 0.0) for p in points]
    other_mean = sum(others) / len(others) if others else 0.0
    result = BenchResult(
        stack=topology.stack, started_at=started_at,
        finished_at=datetime.now(UTC).isoformat(timespec="seconds"),
        options={"quick": opts.quick, "ns": list(opts.ns), "variants": list(opts.variants),
                 "duration_s": opts.duration_s, "max_requests": opts.max_requests,
                 "timeout_s": opts.timeout_s},
        machine={"cpus": os.cpu_count(), "loadavg_start": load_start, "loadavg_end": load_end,
                 "other_cores_mean": round(other_mean, 3),
                 "under_load": load_start >= QUIET_LOADAVG or other_mean >= QUIET_OTHER_CORES,
                 "client": f"aiohttp {aiohttp.__version__} in one asyncio process"},
        configurations={"stack": _describe_stack(topology),
                        **{name: peer.describe() for name, peer in peers.items()}},
        durability={"stack": _stack_durability(topology),
                    **{name: {"durable": peer.mode.durable, "why": peer.mode.durability}
                       for name, peer in peers.items()}},
        points=points, bounds=bound_results, out_dir=Path(out_dir),
        notes=derive_notes(points, bound_results))
    paths = write_report(result, topology.monitoring.slo_availability)
    say(f"report: {paths['markdown']}")
    return result
