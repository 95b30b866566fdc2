"""Prometheus exporter for PgBouncer's admin console (SHOW POOLS/STATS/LISTS/DATABASES/CONFIG).

Why this exists: Debian 12's `prometheus-pgbouncer-exporter` 1.7 crashes against
PgBouncer 1.18 (`KeyError: 'total_requests'`: 1.18 renamed the SHOW STATS columns),
and the PyPI package pins psycopg2 2.8.5 and prometheus_client 0.8, which do not
install on Python 3.11. This one reads whatever columns the running PgBouncer
returns, so a renamed column costs a metric, never the exporter.

How it talks to PgBouncer: the admin console is the pseudo-database `pgbouncer`.
It speaks only the simple query protocol and rejects transactions, so the
connection uses autocommit and psycopg's `ClientCursor` (client-side parameter
binding: no Parse/Bind messages, which the console answers with an error).

Deadlines: the lab scrapes every second. A hung or partitioned PgBouncer must show
as `pgbouncer_up 0` within the scrape, not as a scrape timeout, so the queries run
in a worker thread with a deadline; while a previous query is still stuck, scrapes
answer `pgbouncer_up 0` at once instead of piling up threads.

Runs from its own venv (prometheus-client + psycopg, see requirements.txt):

    pgbouncer_exporter.py --listen 127.0.10.31:9127 --pgbouncer 127.0.10.31:6432 \\
        --user pgbouncer_stats --password-file /path/to/password
"""

from __future__ import annotations

import argparse
import concurrent.futures
import logging
import signal
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import start_http_server
from prometheus_client.core import REGISTRY, CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

LOG = logging.getLogger("pgbouncer_exporter")

Row = Mapping[str, Any]

#: SHOW POOLS column → (metric suffix, help, scale). Labels: database, user.
POOL_GAUGES: dict[str, tuple[str, str, float]] = {
    "cl_active": ("client_active_connections",
                  "Client connections linked to a server connection or idle.", 1),
    "cl_waiting": ("client_waiting_connections",
                   "Client connections waiting for a server connection.", 1),
    "cl_active_cancel_req": ("client_active_cancel_connections",
                             "Client cancel requests forwarded to the server.", 1),
    "cl_waiting_cancel_req": ("client_waiting_cancel_connections",
                              "Client cancel requests not yet forwarded.", 1),
    "sv_active": ("server_active_connections",
                  "Server connections linked to a client.", 1),
    "sv_idle": ("server_idle_connections",
                "Server connections idle and ready for a client.", 1),
    "sv_used": ("server_used_connections",
                "Server connections idle for longer than server_check_delay.", 1),
    "sv_tested": ("server_testing_connections",
                  "Server connections running server_reset_query or server_check_query.", 1),
    "sv_login": ("server_login_connections", "Server connections logging in.", 1),
}

#: SHOW STATS column → (metric suffix, help, scale to base unit). Labels: database.
#: 1.18 names; older versions' total_requests simply has no entry and is skipped.
STATS_COUNTERS: dict[str, tuple[str, str, float]] = {
    "total_xact_count": ("transactions", "SQL transactions pooled.", 1),
    "total_query_count": ("queries", "SQL queries pooled.", 1),
    "total_received": ("received_bytes", "Bytes received from clients.", 1),
    "total_sent": ("sent_bytes", "Bytes sent to clients.", 1),
    "total_xact_time": ("transaction_duration_seconds",
                        "Time spent in transactions, idle in transaction included.", 1e-6),
    "total_query_time": ("query_duration_seconds", "Time spent running queries.", 1e-6),
    "total_wait_time": ("client_wait_seconds",
                        "Time clients spent waiting for a server connection.", 1e-6),
}

#: SHOW DATABASES column → (metric suffix, help). Labels: database (PgBouncer's name),
#: backend_database, pool_mode. Its `host` column is left out on purpose: Prometheus
#: targets carry a `host` label (the stack host) that it would clash with.
DATABASE_GAUGES: dict[str, tuple[str, str]] = {
    "pool_size": ("pool_size", "Server connections a pool of this database may open."),
    "min_pool_size": ("min_pool_size", "Server connections kept open at least."),
    "reserve_pool": ("reserve_pool_size", "Extra server connections when clients wait."),
    "max_connections": ("max_connections", "Server connections allowed (0: unlimited)."),
    "current_connections": ("current_connections", "Server connections open now."),
    "paused": ("paused", "1 while the database is PAUSEd."),
    "disabled": ("disabled", "1 while the database is DISABLEd."),
}

#: SHOW CONFIG key → (metric name, help).
CONFIG_GAUGES: dict[str, tuple[str, str]] = {
    "max_client_conn": ("pgbouncer_config_max_client_connections",
                        "Client connections PgBouncer accepts at most."),
    "default_pool_size": ("pgbouncer_config_default_pool_size",
                          "Default server connections per pool."),
    "reserve_pool_size": ("pgbouncer_config_reserve_pool_size",
                          "Extra server connections per pool when clients wait."),
    "max_db_connections": ("pgbouncer_config_max_db_connections",
                           "Server connections per database at most (0: unlimited)."),
    "max_user_connections": ("pgbouncer_config_max_user_connections",
                             "Server connections per user at most (0: unlimited)."),
    "query_timeout": ("pgbouncer_config_query_timeout_seconds",
                      "Queries running longer are cancelled (0: never)."),
    "query_wait_timeout": ("pgbouncer_config_query_wait_timeout_seconds",
                           "Clients waiting longer for a server are disconnected."),
}


@dataclass
class AdminSnapshot:
    """The rows of one round of SHOW commands, keyed by column name."""

    pools: list[Row] = field(default_factory=list)
    stats: list[Row] = field(default_factory=list)
    lists: list[Row] = field(default_factory=list)
    databases: list[Row] = field(default_factory=list)
    config: list[Row] = field(default_factory=list)


def _number(value: Any) -> float | None:
    """A numeric cell as float; None for NULL, empty or text cells."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(str(value).strip())
    except ValueError:
        return None


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def pool_metrics(rows: Iterable[Row]) -> list[Metric]:
    """SHOW POOLS → connection gauges per (database, user) and the longest wait."""
    rows = list(rows)
    families: dict[str, GaugeMetricFamily] = {}
    maxwait = GaugeMetricFamily(
        "pgbouncer_pools_client_maxwait_seconds",
        "How long the oldest waiting client of the pool has waited.",
        labels=["database", "user"])
    for row in rows:
        labels = [_text(row.get("database")), _text(row.get("user"))]
        for column, (suffix, help_text, scale) in POOL_GAUGES.items():
            value = _number(row.get(column))
            if value is None:
                continue
            family = families.setdefault(column, GaugeMetricFamily(
                f"pgbouncer_pools_{suffix}", help_text, labels=["database", "user"]))
            family.add_metric(labels, value * scale)
        seconds = _number(row.get("maxwait"))
        if seconds is not None:
            # maxwait holds whole seconds; maxwait_us the microseconds on top.
            seconds += (_number(row.get("maxwait_us")) or 0.0) / 1e6
            maxwait.add_metric(labels, seconds)
    return [*families.values(), maxwait]


def stats_metrics(rows: Iterable[Row]) -> list[Metric]:
    """SHOW STATS → cumulative counters per database, in base units (seconds, bytes)."""
    families: dict[str, CounterMetricFamily] = {}
    for row in rows:
        labels = [_text(row.get("database"))]
        for column, (suffix, help_text, scale) in STATS_COUNTERS.items():
            value = _number(row.get(column))
            if value is None:
                continue
            family = families.setdefault(column, CounterMetricFamily(
                f"pgbouncer_stats_{suffix}", help_text, labels=["database"]))
            family.add_metric(labels, value * scale)
    return list(families.values())


def lists_metrics(rows: Iterable[Row]) -> list[Metric]:
    """SHOW LISTS → one gauge per list (used_clients, free_servers, …)."""
    metrics: list[Metric] = []
    for row in rows:
        name = _text(row.get("list"))
        value = _number(row.get("items"))
        if not name.replace("_", "").isalnum() or value is None:
            continue
        metrics.append(GaugeMetricFamily(f"pgbouncer_lists_{name}",
                                         f"Items in PgBouncer's {name} list.", value=value))
    return metrics


def database_metrics(rows: Iterable[Row]) -> list[Metric]:
    """SHOW DATABASES → pool size and limits per PgBouncer database."""
    families: dict[str, GaugeMetricFamily] = {}
    label_names = ["database", "backend_database", "pool_mode"]
    for row in rows:
        labels = [_text(row.get("name")), _text(row.get("database")),
                  _text(row.get("pool_mode"))]
        for column, (suffix, help_text) in DATABASE_GAUGES.items():
            value = _number(row.get(column))
            if value is None:
                continue
            family = families.setdefault(column, GaugeMetricFamily(
                f"pgbouncer_databases_{suffix}", help_text, labels=label_names))
            family.add_metric(labels, value)
    return list(families.values())


def config_metrics(rows: Iterable[Row]) -> list[Metric]:
    """SHOW CONFIG → the limits the alerts compare against (max_client_conn, …)."""
    values = {_text(row.get("key")): row.get("value") for row in rows}
    metrics: list[Metric] = []
    for key, (name, help_text) in CONFIG_GAUGES.items():
        value = _number(values.get(key))
        if value is not None:
            metrics.append(GaugeMetricFamily(name, help_text, value=value))
    return metrics


def snapshot_metrics(snapshot: AdminSnapshot) -> list[Metric]:
    """Every metric of one successful round of SHOW commands."""
    return [*pool_metrics(snapshot.pools), *stats_metrics(snapshot.stats),
            *lists_metrics(snapshot.lists), *database_metrics(snapshot.databases),
            *config_metrics(snapshot.config)]


def _rows(cursor: Any, command: str) -> list[Row]:
    cursor.execute(command)
    columns: Sequence[str] = [c.name for c in cursor.description or ()]
    return [dict(zip(columns, values, strict=True)) for values in cursor.fetchall()]


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    user: str
    password_file: Path
    connect_timeout_s: int = 2

    def conninfo(self) -> dict[str, Any]:
        # Re-read on every connect, so a rotated secret needs no restart.
        password = self.password_file.read_text(encoding="utf-8").strip()
        return {
            "host": self.host, "port": self.port, "dbname": "pgbouncer", "user": self.user,
            "password": password, "connect_timeout": self.connect_timeout_s,
            "application_name": "pgbouncer_exporter",
            # A partitioned PgBouncer must fail the connection rather than hold it.
            "keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2,
            "keepalives_count": 2, "tcp_user_timeout": 5000,
        }


class AdminConsole:
    """One reused connection to the admin console; reopened after any error."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self._conn: Any = None

    def snapshot(self) -> AdminSnapshot:
        import psycopg  # here, so that the parsing above imports without psycopg

        try:
            if self._conn is None or self._conn.closed:
                self._conn = psycopg.connect(**self.target.conninfo(), autocommit=True,
                                             cursor_factory=psycopg.ClientCursor,
                                             prepare_threshold=None)
            with self._conn.cursor() as cursor:
                return AdminSnapshot(
                    pools=_rows(cursor, "SHOW POOLS"),
                    stats=_rows(cursor, "SHOW STATS"),
                    lists=_rows(cursor, "SHOW LISTS"),
                    databases=_rows(cursor, "SHOW DATABASES"),
                    config=_rows(cursor, "SHOW CONFIG"),
                )
        except Exception:
            self.close()
            raise

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - closing a broken connection may fail too
                LOG.debug("closing the admin connection failed", exc_info=True)


class PgbouncerCollector(Collector):
    """Collects on every scrape, within `deadline_s`; pgbouncer_up says whether it worked."""

    def __init__(self, console: AdminConsole, deadline_s: float) -> None:
        self.console = console
        self.deadline_s = deadline_s
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="pgbouncer-admin")
        self._pending: concurrent.futures.Future[AdminSnapshot] | None = None
        self._lock = threading.Lock()

    def _fetch(self) -> AdminSnapshot | None:
        with self._lock:
            if self._pending is not None and not self._pending.done():
                return None  # the previous round is still stuck: PgBouncer hangs
            self._pending = self._pool.submit(self.console.snapshot)
            pending = self._pending
        try:
            return pending.result(timeout=self.deadline_s)
        except concurrent.futures.TimeoutError:
            LOG.warning("PgBouncer did not answer within %.1fs", self.deadline_s)
        except Exception as exc:  # noqa: BLE001 - any failure means "down", logged once
            LOG.warning("PgBouncer admin console failed: %s", str(exc).strip())
        return None

    def collect(self) -> Iterator[Metric]:
        started = time.monotonic()
        snapshot = self._fetch()
        yield GaugeMetricFamily("pgbouncer_up",
                                "1 if the admin console answered this scrape, else 0.",
                                value=1 if snapshot is not None else 0)
        if snapshot is not None:
            yield from snapshot_metrics(snapshot)
        yield GaugeMetricFamily("pgbouncer_exporter_scrape_duration_seconds",
                                "Time this scrape spent on the admin console.",
                                value=time.monotonic() - started)


def _address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not ADDRESS:PORT")
    return host, int(port)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", type=_address, required=True,
                        help="ADDRESS:PORT to serve /metrics on")
    parser.add_argument("--pgbouncer", type=_address, required=True,
                        help="ADDRESS:PORT of PgBouncer")
    parser.add_argument("--user", default="pgbouncer_stats",
                        help="a stats_users member (read-only console access)")
    parser.add_argument("--password-file", type=Path, required=True,
                        help="file holding the user's password")
    parser.add_argument("--deadline", type=float, default=0.8,
                        help="seconds a scrape may wait for PgBouncer (keep it under the "
                             "Prometheus scrape timeout)")
    parser.add_argument("--log-level", default="INFO")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.password_file.is_file():
        LOG.error("password file %s does not exist", args.password_file)
        return 2
    host, port = args.pgbouncer
    console = AdminConsole(Target(host=host, port=port, user=args.user,
                                  password_file=args.password_file))
    REGISTRY.register(PgbouncerCollector(console, args.deadline))
    listen_host, listen_port = args.listen
    start_http_server(listen_port, addr=listen_host)
    LOG.info("serving http://%s:%d/metrics for PgBouncer %s:%d", listen_host, listen_port,
             host, port)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    stop.wait()
    console.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
