"""Real health probes for every service of a stack.

Deploy waits on these (not on sleeps), `invoke status` shows them, and the
GameDay engine checks the stack with them after a cleanup. Each probe is bounded
in time and never retries on its own.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import psycopg
import redis

from infra.connections import APP, Role, first_line, pg_conninfo, redis_client
from infra.paths import tls_dir
from infra.topology import Service, Topology

PROBE_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class Health:
    ok: bool
    detail: str


def _tcp(service: Service) -> Health:
    try:
        with socket.create_connection((service.address, service.port), PROBE_TIMEOUT_S):
            return Health(True, "accepting connections")
    except OSError as exc:
        return Health(False, f"no listener: {exc.strerror or exc}")


def _pgbackrest_tls(topology: Topology, service: Service) -> Health:
    """A TLS handshake as pgBackRest's peer makes it: the server's certificate checked
    against the stack's CA and its address, ours (the peer host's) checked by it."""
    peer_kind = "pgbackrest_pg" if service.name == "pgbackrest" else "pgbackrest"
    peers = topology.instances(peer_kind)
    if not peers:
        return _tcp(service)
    certs = tls_dir(topology)
    try:
        ctx = ssl.create_default_context(cafile=str(certs / "ca.crt"))
        ctx.load_cert_chain(str(certs / f"{peers[0].host}.crt"),
                            str(certs / f"{peers[0].host}.key"))
        with socket.create_connection((service.address, service.port), PROBE_TIMEOUT_S) as raw, \
                ctx.wrap_socket(raw, server_hostname=service.address) as tls:
            return Health(True, f"TLS ({tls.version()}) as {peers[0].host}")
    except (OSError, ssl.SSLError) as exc:
        return Health(False, f"TLS handshake: {exc}")


def _http(url: str, expect: Callable[[httpx.Response], bool] | None = None) -> Health:
    try:
        resp = httpx.get(url, timeout=PROBE_TIMEOUT_S)
    except httpx.HTTPError as exc:
        return Health(False, f"{type(exc).__name__}: {exc}")
    ok = expect(resp) if expect else resp.status_code == 200
    return Health(ok, f"HTTP {resp.status_code}")


def _sql(topology: Topology, service: Service, role: Role, dbname: str) -> Health:
    try:
        info = pg_conninfo(topology, service, role, dbname=dbname,
                           connect_timeout=int(PROBE_TIMEOUT_S))
        with psycopg.connect(**info, prepare_threshold=None, autocommit=True) as conn:
            conn.execute("SELECT 1")
        return Health(True, f"SELECT 1 as {role.user}")
    except (psycopg.Error, OSError) as exc:
        return Health(False, first_line(exc))


def _redis(topology: Topology, service: Service) -> Health:
    client = redis_client(topology, service, PROBE_TIMEOUT_S)
    try:
        return Health(bool(client.ping()), "PING → PONG")
    except (redis.RedisError, OSError) as exc:
        return Health(False, str(exc))
    finally:
        client.close()


def _app(topology: Topology, service: Service,
         answered: Callable[[httpx.Response], bool] | None = None) -> Health:
    """The health view through the workers, then /metrics where Prometheus scrapes it.

    The app's metrics have a listener of their own (the Gunicorn master's, see
    app/civicpulse/gunicorn_conf.py): an app host whose workers answer but whose
    metrics do not is blind to every app alert, so it is not healthy either.
    `answered` judges the health view's response (default: 200).
    """
    health = _http(f"http://{service.endpoint}{topology.workload.health_path}", answered)
    if not health.ok or service.metrics_port == service.port or not service.kind.metrics_path:
        return health
    metrics = _http(f"http://{service.metrics_endpoint}{service.kind.metrics_path}")
    if not metrics.ok:
        return Health(False, f"{health.detail}; metrics on {service.metrics_endpoint}: "
                             f"{metrics.detail}")
    return Health(True, f"{health.detail}; metrics {metrics.detail}")


def alive(topology: Topology, service: Service) -> Health:
    """Liveness, not readiness: does the process answer at all?

    An app host whose health view says 503 because PostgreSQL is slow or down is alive;
    restarting it cures nothing and turns a degraded tier into an outage (a GameDay
    measured exactly that: restarting slow-but-alive app hosts added two AppHostDown
    pages and 658 errors). Other services: their readiness probe is their liveness.
    """
    if service.name != "app":
        return probe(topology, service)
    return _app(topology, service, answered=lambda r: True)


def probe(topology: Topology, service: Service) -> Health:
    """Check one service the way its clients use it."""
    base = f"http://{service.endpoint}"
    db = topology.sizing.postgresql.database
    match service.name:
        case "postgresql":
            return _sql(topology, service, APP, db)
        case "pgbouncer":
            return _sql(topology, service, APP, db)
        case "redis":
            return _redis(topology, service)
        case "nginx":
            return _http(base + topology.workload.health_path,
                         lambda r: r.status_code == 200)
        case "app":
            return _app(topology, service)
        case "prometheus" | "alertmanager":
            return _http(base + "/-/ready")
        case "pgbackrest" | "pgbackrest_pg":
            return _pgbackrest_tls(topology, service)
        case _ if service.kind.metrics_path:
            return _http(f"http://{service.metrics_endpoint}{service.kind.metrics_path}")
        case _:
            return _tcp(service)


def probe_all(topology: Topology) -> dict[tuple[str, str], Health]:
    return {(s.host, s.name): probe(topology, s) for s in topology.services}


def wait_healthy(topology: Topology, timeout_s: float = 120,
                 on_wait: Callable[[list[str]], None] | None = None
                 ) -> dict[tuple[str, str], Health]:
    """Poll every probe until all pass or the deadline; returns the last results."""
    deadline = time.monotonic() + timeout_s
    while True:
        results = probe_all(topology)
        failing = [f"{h}/{s}" for (h, s), r in results.items() if not r.ok]
        if not failing or time.monotonic() >= deadline:
            return results
        if on_wait:
            on_wait(failing)
        time.sleep(0.5)
