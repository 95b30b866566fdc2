"""Our PgBouncer exporter: parsing of the admin console's SHOW output, and deadlines."""

from __future__ import annotations

import threading
import time

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from monitoring.exporters import pgbouncer_exporter as pgb

# Rows as PgBouncer 1.18 returns them (columns copied from a live admin console).
POOLS_118 = [
    {"database": "civicpulse", "user": "civicpulse", "cl_active": 12, "cl_waiting": 3,
     "cl_active_cancel_req": 0, "cl_waiting_cancel_req": 0, "sv_active": 19,
     "sv_active_cancel": 0, "sv_being_canceled": 0, "sv_idle": 1, "sv_used": 0,
     "sv_tested": 0, "sv_login": 0, "maxwait": 2, "maxwait_us": 250000,
     "pool_mode": "transaction"},
    {"database": "pgbouncer", "user": "pgbouncer", "cl_active": 1, "cl_waiting": 0,
     "cl_active_cancel_req": 0, "cl_waiting_cancel_req": 0, "sv_active": 0,
     "sv_active_cancel": 0, "sv_being_canceled": 0, "sv_idle": 0, "sv_used": 0,
     "sv_tested": 0, "sv_login": 0, "maxwait": 0, "maxwait_us": 0, "pool_mode": "statement"},
]
STATS_118 = [
    {"database": "civicpulse", "total_xact_count": 1500, "total_query_count": 4500,
     "total_received": 100000, "total_sent": 250000, "total_xact_time": 3_000_000,
     "total_query_time": 1_500_000, "total_wait_time": 500_000, "avg_xact_count": 10,
     "avg_query_count": 30, "avg_recv": 0, "avg_sent": 0, "avg_xact_time": 2000,
     "avg_query_time": 333, "avg_wait_time": 0},
]
# PgBouncer <= 1.7 named the columns differently: Debian's exporter wants these and
# crashes on 1.18 (KeyError: 'total_requests'); ours must just skip what it lacks.
STATS_LEGACY = [{"database": "civicpulse", "total_requests": 99, "total_received": 10,
                 "total_sent": 20, "total_query_time": 1_000_000}]
LISTS_118 = [{"list": "databases", "items": 2}, {"list": "used_clients", "items": 16},
             {"list": "free_clients", "items": 1984}, {"list": "bad name!", "items": 1}]
DATABASES_118 = [
    {"name": "civicpulse", "host": "127.0.10.32", "port": 5432, "database": "civicpulse",
     "force_user": None, "pool_size": 20, "min_pool_size": 0, "reserve_pool": 5,
     "pool_mode": None, "max_connections": 60, "current_connections": 20, "paused": 0,
     "disabled": 0},
]
CONFIG_118 = [{"key": "max_client_conn", "value": "2000", "default": "100", "changeable": "yes"},
              {"key": "default_pool_size", "value": "20", "default": "20", "changeable": "yes"},
              {"key": "query_timeout", "value": "10", "default": "0", "changeable": "yes"},
              {"key": "logfile", "value": "/var/log/x", "default": "", "changeable": "yes"}]


def _samples(metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for m in metrics for s in m.samples}


def test_pools_become_gauges_per_database_and_user():
    samples = _samples(pgb.pool_metrics(POOLS_118))
    key = (("database", "civicpulse"), ("user", "civicpulse"))
    assert samples[("pgbouncer_pools_client_active_connections", key)] == 12
    assert samples[("pgbouncer_pools_client_waiting_connections", key)] == 3
    assert samples[("pgbouncer_pools_server_active_connections", key)] == 19
    assert samples[("pgbouncer_pools_server_idle_connections", key)] == 1
    assert samples[("pgbouncer_pools_server_used_connections", key)] == 0
    # maxwait is whole seconds, maxwait_us the microseconds on top of them.
    assert samples[("pgbouncer_pools_client_maxwait_seconds", key)] == pytest.approx(2.25)


def test_stats_become_counters_in_base_units():
    samples = _samples(pgb.stats_metrics(STATS_118))
    key = (("database", "civicpulse"),)
    assert samples[("pgbouncer_stats_transactions_total", key)] == 1500
    assert samples[("pgbouncer_stats_queries_total", key)] == 4500
    assert samples[("pgbouncer_stats_sent_bytes_total", key)] == 250000
    assert samples[("pgbouncer_stats_query_duration_seconds_total", key)] == pytest.approx(1.5)
    assert samples[("pgbouncer_stats_client_wait_seconds_total", key)] == pytest.approx(0.5)
    assert not any(name.startswith("pgbouncer_stats_avg") for name, _ in samples)


def test_columns_of_other_versions_are_skipped_not_fatal():
    samples = _samples(pgb.stats_metrics(STATS_LEGACY))
    names = {name for name, _ in samples}
    assert "pgbouncer_stats_queries_total" not in names  # no total_query_count in 1.7
    assert ("pgbouncer_stats_received_bytes_total", (("database", "civicpulse"),)) in samples
    assert pgb.pool_metrics([{"database": "x", "user": "y", "cl_active": None}])


def test_lists_databases_and_config():
    lists = _samples(pgb.lists_metrics(LISTS_118))
    assert lists[("pgbouncer_lists_used_clients", ())] == 16
    assert ("pgbouncer_lists_bad name!", ()) not in lists
    databases = _samples(pgb.database_metrics(DATABASES_118))
    key = (("backend_database", "civicpulse"), ("database", "civicpulse"), ("pool_mode", ""))
    assert databases[("pgbouncer_databases_pool_size", key)] == 20
    assert databases[("pgbouncer_databases_reserve_pool_size", key)] == 5
    # SHOW DATABASES' own `host` column would clash with the scrape's `host` label.
    assert not any(label == "host" for _, labels in databases for label, _ in labels)
    config = _samples(pgb.config_metrics(CONFIG_118))
    assert config[("pgbouncer_config_max_client_connections", ())] == 2000
    assert config[("pgbouncer_config_query_timeout_seconds", ())] == 10
    assert len(config) == 3  # text settings such as logfile are not metrics


class FakeConsole:
    def __init__(self, snapshot=None, error=None, gate=None):
        self.snapshot_value, self.error, self.gate = snapshot, error, gate
        self.calls = 0

    def snapshot(self):
        self.calls += 1
        if self.gate is not None:
            self.gate.wait()
        if self.error:
            raise self.error
        return self.snapshot_value


def _scrape(console, deadline_s=0.3) -> str:
    registry = CollectorRegistry()
    registry.register(pgb.PgbouncerCollector(console, deadline_s))
    return generate_latest(registry).decode()


def test_a_successful_scrape_reports_up_and_every_family():
    snapshot = pgb.AdminSnapshot(pools=POOLS_118, stats=STATS_118, lists=LISTS_118,
                                 databases=DATABASES_118, config=CONFIG_118)
    text = _scrape(FakeConsole(snapshot=snapshot))
    assert "pgbouncer_up 1.0" in text
    for name in ("pgbouncer_pools_client_waiting_connections", "pgbouncer_stats_queries_total",
                 "pgbouncer_lists_used_clients", "pgbouncer_databases_pool_size",
                 "pgbouncer_config_max_client_connections"):
        assert name in text


def test_a_failing_console_reports_down_without_other_metrics():
    text = _scrape(FakeConsole(error=OSError("connection refused")))
    assert "pgbouncer_up 0.0" in text
    assert "pgbouncer_pools_" not in text


def test_a_hung_pgbouncer_reports_down_within_the_deadline_and_piles_up_nothing():
    gate = threading.Event()
    console = FakeConsole(snapshot=pgb.AdminSnapshot(), gate=gate)
    collector = pgb.PgbouncerCollector(console, deadline_s=0.2)
    registry = CollectorRegistry()
    registry.register(collector)
    started = time.monotonic()
    assert "pgbouncer_up 0.0" in generate_latest(registry).decode()
    assert time.monotonic() - started < 1.0
    started = time.monotonic()
    assert "pgbouncer_up 0.0" in generate_latest(registry).decode()
    assert time.monotonic() - started < 0.1, "a second scrape waited for the stuck one"
    assert console.calls == 1
    gate.set()
    time.sleep(0.05)
    assert "pgbouncer_up 1.0" in generate_latest(registry).decode()


def test_target_connects_to_the_admin_console_with_the_password_file(tmp_path):
    password = tmp_path / "password"
    password.write_text("s3cret\n", encoding="utf-8")
    target = pgb.Target(host="127.0.10.31", port=6432, user="pgbouncer_stats",
                        password_file=password)
    info = target.conninfo()
    assert (info["dbname"], info["user"], info["password"]) == (
        "pgbouncer", "pgbouncer_stats", "s3cret")
    args = pgb.parse_args(["--listen", "127.0.10.31:9127", "--pgbouncer", "127.0.10.31:6432",
                           "--password-file", str(password)])
    assert args.listen == ("127.0.10.31", 9127) and args.user == "pgbouncer_stats"
    with pytest.raises(SystemExit):
        pgb.parse_args(["--listen", "nowhere", "--pgbouncer", "x:1", "--password-file", "p"])
