"""The metric names our rules and dashboards may use, per source.

A typo in a metric name makes an alert silently never fire and a panel silently
empty; promtool cannot catch it. The tests check every name the rules and
dashboards use against this catalog. Exporter names were read from the Debian 12
exporters on a running stack (postgres_exporter 0.11.1 with our query file,
redis_exporter 1.45, nginx-prometheus-exporter 0.11, node_exporter 1.5,
Prometheus 2.42, Alertmanager 0.25); ours come from the exporter's own tables.
Only the names we use are listed: add one here after checking the exporter
really serves it (`curl -s <exporter>/metrics | grep <name>`).
"""

from __future__ import annotations

import ast
from pathlib import Path

from monitoring.exporters import pgbouncer_exporter as pgb

#: The app's contract (app/civicpulse/core/metrics.py), job "app".
APP = frozenset({
    "civicpulse_http_requests_total",
    "civicpulse_http_request_duration_seconds_bucket",
    "civicpulse_http_request_duration_seconds_sum",
    "civicpulse_http_request_duration_seconds_count",
    "civicpulse_db_errors_total",
    "civicpulse_cache_errors_total",
    "civicpulse_cache_circuit_open",
    "civicpulse_audit_events_written_total",
    "civicpulse_audit_write_failures_total",
    "civicpulse_users_created_total",
})

POSTGRES = frozenset({
    "pg_up",
    # From monitoring/exporters/postgres_exporter_queries.yml:
    "pg_postmaster_start_time_seconds",
    "pg_archiver_archived_count",
    "pg_archiver_failed_count",
    "pg_settings_max_connections",
    "pg_stat_activity_count",
    "pg_stat_activity_max_tx_duration",
    "pg_stat_database_deadlocks",
    "pg_stat_database_tup_deleted",
    "pg_stat_database_xact_commit",
    "pg_stat_database_xact_rollback",
    "pg_database_size_bytes",
})

REDIS = frozenset({
    "redis_up",
    "redis_uptime_in_seconds",
    "redis_start_time_seconds",
    "redis_memory_used_bytes",
    "redis_memory_max_bytes",
    "redis_connected_clients",
    "redis_config_maxclients",
    "redis_rejected_connections_total",
    "redis_commands_processed_total",
    "redis_keyspace_hits_total",
    "redis_keyspace_misses_total",
    "redis_evicted_keys_total",
    "redis_expired_keys_total",
})

NGINX = frozenset({
    "nginx_up",
    "nginx_connections_accepted",
    "nginx_connections_active",
    "nginx_connections_handled",
    "nginx_http_requests_total",
})

NODE = frozenset({
    "node_filesystem_avail_bytes",
    "node_filesystem_size_bytes",
    "node_memory_MemAvailable_bytes",
    "node_memory_MemTotal_bytes",
})

PROMETHEUS = frozenset({
    "prometheus_config_last_reload_successful",
    "prometheus_rule_evaluation_failures_total",
    "prometheus_rule_group_last_duration_seconds",
    "prometheus_rule_group_interval_seconds",
    "prometheus_notifications_alertmanagers_discovered",
    "prometheus_notifications_errors_total",
})

ALERTMANAGER = frozenset({
    "alertmanager_config_last_reload_successful",
    "alertmanager_notifications_failed_total",
})


def pgbouncer_metric_names() -> frozenset[str]:
    """Every name our PgBouncer exporter can serve (from its own tables)."""
    names = {"pgbouncer_up", "pgbouncer_exporter_scrape_duration_seconds",
             "pgbouncer_pools_client_maxwait_seconds"}
    names |= {f"pgbouncer_pools_{suffix}" for suffix, _, _ in pgb.POOL_GAUGES.values()}
    names |= {f"pgbouncer_stats_{suffix}_total" for suffix, _, _ in pgb.STATS_COUNTERS.values()}
    names |= {f"pgbouncer_databases_{suffix}" for suffix, _ in pgb.DATABASE_GAUGES.values()}
    names |= {name for name, _ in pgb.CONFIG_GAUGES.values()}
    # SHOW LISTS of PgBouncer 1.18.
    names |= {f"pgbouncer_lists_{item}" for item in (
        "databases", "users", "pools", "free_clients", "used_clients", "login_clients",
        "free_servers", "used_servers", "dns_names", "dns_zones", "dns_queries", "dns_pending")}
    return frozenset(names)


#: Series Prometheus makes itself: per target, and for alerts.
#: Our backup schedule's textfile (job "pgbackrest"): its own table of metrics, read
#: from the script that writes them (it runs on the backup host, not from here).
BACKUP_SCHEDULE = (Path(__file__).resolve().parent.parent / "playbooks" / "roles"
                   / "pgbackrest" / "files" / "backup_schedule.py")


def pgbackrest_metric_names() -> frozenset[str]:
    tree = ast.parse(BACKUP_SCHEDULE.read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "HELP":
            return frozenset(ast.literal_eval(node.value))
    raise ValueError(f"{BACKUP_SCHEDULE}: no HELP table of metric names")


PROMETHEUS_SYNTHETIC = frozenset({"up", "scrape_duration_seconds", "scrape_samples_scraped",
                                  "ALERTS", "ALERTS_FOR_STATE"})


def known_metric_names() -> frozenset[str]:
    """Every scraped or synthetic name (recording rules are added by the caller)."""
    return (APP | POSTGRES | REDIS | NGINX | NODE | PROMETHEUS | ALERTMANAGER
            | pgbouncer_metric_names() | pgbackrest_metric_names() | PROMETHEUS_SYNTHETIC)
