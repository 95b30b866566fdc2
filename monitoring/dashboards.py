"""Grafana dashboards as code, built with grafana-foundation-sdk.

`python -m monitoring dashboards` writes one JSON file per dashboard into
`monitoring/grafana/dashboards/` (checked in; a test regenerates and diffs, and
checks every query). Grafana itself is not installable on the local target; the
docker target mounts `monitoring/grafana/provisioning/` and the dashboards
directory into its Grafana container.

Every panel queries the provisioned Prometheus datasource by its fixed uid, so the
files need no import-time templating. Metric names are the app's contract
(app/civicpulse/core/metrics.py), the exporters' (monitoring/metrics_catalog.py)
and the recording rules of monitoring/prometheus/rules.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from monitoring.render import MONITORING_DIR

DASHBOARDS_DIR = MONITORING_DIR / "grafana" / "dashboards"
#: uid of the Prometheus datasource in grafana/provisioning/datasources/prometheus.yml.
DATASOURCE_UID = "civicpulse-prometheus"
#: Tag the GameDay engine puts on the Grafana annotations of its fault windows.
GAMEDAY_TAG = "gameday"
SLO = '{service="app",slo="availability"}'
APP = 'job="app",host=~"$host"'


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""


def _sdk() -> Any:
    """Import the SDK lazily: only generating dashboards needs it, not checking them."""
    import grafana_foundation_sdk.builders.dashboard as dashboard
    import grafana_foundation_sdk.builders.prometheus as prometheus
    import grafana_foundation_sdk.builders.stat as stat
    import grafana_foundation_sdk.builders.statetimeline as statetimeline
    import grafana_foundation_sdk.builders.timeseries as timeseries
    import grafana_foundation_sdk.models.dashboard as models

    return dashboard, prometheus, stat, statetimeline, timeseries, models


def _datasource() -> Any:
    models = _sdk()[5]
    return models.DataSourceRef(type_val="prometheus", uid=DATASOURCE_UID)


def _targets(panel: Any, queries: Sequence[Query]) -> Any:
    prometheus = _sdk()[1]
    for i, query in enumerate(queries):
        target = (prometheus.Dataquery().expr(query.expr).ref_id(chr(ord("A") + i))
                  .datasource(_datasource()))
        if query.legend:
            target = target.legend_format(query.legend)
        panel = panel.with_target(target)
    return panel.datasource(_datasource())


def timeseries_panel(title: str, unit: str, queries: Sequence[Query], *, description: str = "",
                     span: int = 12, height: int = 8, minimum: float | None = 0) -> Any:
    timeseries = _sdk()[4]
    panel = timeseries.Panel().title(title).unit(unit).span(span).height(height)
    if description:
        panel = panel.description(description)
    if minimum is not None:
        panel = panel.min(minimum)
    return _targets(panel, queries)


def stat_panel(title: str, unit: str, queries: Sequence[Query], *, description: str = "",
               span: int = 6, height: int = 4, decimals: int | None = None) -> Any:
    stat = _sdk()[2]
    panel = stat.Panel().title(title).unit(unit).span(span).height(height)
    if description:
        panel = panel.description(description)
    if decimals is not None:
        panel = panel.decimals(decimals)
    return _targets(panel, queries)


def state_panel(title: str, queries: Sequence[Query], *, description: str = "",
                span: int = 24, height: int = 7) -> Any:
    statetimeline = _sdk()[3]
    panel = statetimeline.Panel().title(title).span(span).height(height)
    if description:
        panel = panel.description(description)
    return _targets(panel, queries)


def _base(uid: str, title: str, description: str, tags: list[str]) -> Any:
    dashboard = _sdk()[0]
    return (dashboard.Dashboard(title).uid(uid).description(description)
            .tags(["civicpulse", *tags]).refresh("5s").time("now-30m", "now")
            .timezone("utc").editable())


def _host_variable() -> Any:
    dashboard, models = _sdk()[0], _sdk()[5]
    return (dashboard.QueryVariable("host").label("App host")
            .datasource(_datasource())
            .query('label_values(up{job="app"}, host)')
            .refresh(models.VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(models.VariableSort.ALPHABETICAL_ASC)
            .multi(True).include_all(True).all_value(".*"))


def overview() -> Any:
    dashboard = _sdk()[0]
    rate = "[$__rate_interval]"
    requests = f"civicpulse_http_requests_total{{{APP}}}"
    errors = f'civicpulse_http_requests_total{{{APP},status=~"5.."}}'
    buckets = f"civicpulse_http_request_duration_seconds_bucket{{{APP}}}"
    return (
        _base("civicpulse-overview", "CivicPulse / Overview",
              "The app's SLO, traffic, errors and latency per app host.", ["overview"])
        .with_variable(_host_variable())
        .with_row(dashboard.Row("SLO: availability"))
        .with_panel(stat_panel("Availability, last hour", "percentunit",
                               [Query(f"1 - slo:sli_error:ratio_rate1h{SLO}")], decimals=3))
        .with_panel(stat_panel("Availability, last day", "percentunit",
                               [Query(f"1 - slo:sli_error:ratio_rate1d{SLO}")], decimals=3))
        .with_panel(stat_panel("Objective", "percentunit",
                               [Query(f"slo:objective:ratio{SLO}")], decimals=3))
        .with_panel(stat_panel("Error budget burn rate (5m)", "x",
                               [Query(f"slo:current_burn_rate:ratio{SLO}")], decimals=1,
                               description="1x spends the 30-day budget in 30 days; "
                                           "14.4x over 5m and 1h pages."))
        .with_panel(timeseries_panel(
            "Error ratio by window", "percentunit",
            [Query(f"slo:sli_error:ratio_rate{w}{SLO}", w) for w in ("5m", "1h", "6h", "1d")]
            + [Query(f"slo:error_budget:ratio{SLO}", "error budget")],
            description="The windows of the burn-rate alerts, against the budget."))
        .with_row(dashboard.Row("Traffic"))
        .with_panel(timeseries_panel(
            "Requests per second by app host", "reqps",
            [Query(f"sum by (host) (rate({requests}{rate}))", "{{host}}")]))
        .with_panel(timeseries_panel(
            "Requests per second by status", "reqps",
            [Query(f"sum by (status) (rate({requests}{rate}))", "{{status}}")]))
        .with_row(dashboard.Row("Errors"))
        .with_panel(timeseries_panel(
            "5xx ratio by app host", "percentunit",
            [Query(f"sum by (host) (rate({errors}{rate})) / sum by (host) (rate({requests}{rate}))",
                   "{{host}}")]))
        .with_panel(timeseries_panel(
            "Database and cache errors per second", "short",
            [Query(f"sum by (host, kind) (rate(civicpulse_db_errors_total{{{APP}}}{rate}))",
                   "db {{host}} {{kind}}"),
             Query(f"sum by (host, kind) (rate(civicpulse_cache_errors_total{{{APP}}}{rate}))",
                   "cache {{host}} {{kind}}")]))
        .with_row(dashboard.Row("Latency"))
        .with_panel(timeseries_panel(
            "p99 latency by app host", "s",
            [Query(f"histogram_quantile(0.99, sum by (host, le) (rate({buckets}{rate})))",
                   "{{host}}")]))
        .with_panel(timeseries_panel(
            "p50 latency by app host", "s",
            [Query(f"histogram_quantile(0.5, sum by (host, le) (rate({buckets}{rate})))",
                   "{{host}}")]))
        .with_row(dashboard.Row("Health"))
        .with_panel(state_panel(
            "App hosts up", [Query(f"up{{{APP}}}", "{{host}}")], span=12))
        .with_panel(state_panel(
            "Cache circuit open",
            [Query(f"max by (host) (civicpulse_cache_circuit_open{{{APP}}})", "{{host}}")],
            span=12))
        .with_panel(timeseries_panel(
            "Users created and audit events written per second", "short",
            [Query(f"sum by (host) (rate(civicpulse_users_created_total{{{APP}}}{rate}))",
                   "users {{host}}"),
             Query(f"sum by (host) (rate(civicpulse_audit_events_written_total{{{APP}}}{rate}))",
                   "audit {{host}}"),
             Query(f"sum by (host) (rate(civicpulse_audit_write_failures_total{{{APP}}}{rate}))",
                   "audit failures {{host}}")],
            description="Every user creation writes one audit event in the same transaction."))
        .with_panel(timeseries_panel(
            "Firing alerts", "short",
            [Query('sum by (alertname, severity) (ALERTS{alertstate="firing"})',
                   "{{alertname}} ({{severity}})")]))
    )


def database() -> Any:
    dashboard = _sdk()[0]
    rate = "[$__rate_interval]"
    pg = 'job="postgres"'
    pb = 'job="pgbouncer",database!="pgbouncer"'
    return (
        _base("civicpulse-database", "CivicPulse / PostgreSQL & PgBouncer",
              "PostgreSQL (postgres_exporter) and PgBouncer (our exporter).",
              ["postgresql", "pgbouncer"])
        .with_row(dashboard.Row("PostgreSQL"))
        .with_panel(stat_panel("PostgreSQL up", "bool", [Query(f"pg_up{{{pg}}}")]))
        .with_panel(stat_panel("Connections used", "percentunit",
                               [Query(f"sum(pg_stat_activity_count{{{pg}}}) / "
                                      f"max(pg_settings_max_connections{{{pg}}})")]))
        .with_panel(stat_panel("Started", "dateTimeFromNow",
                               [Query(f"pg_postmaster_start_time_seconds{{{pg}}} * 1000")]))
        .with_panel(stat_panel("Deadlocks (1h)", "short",
                               [Query(f"sum(increase(pg_stat_database_deadlocks{{{pg}}}[1h]))")]))
        .with_panel(timeseries_panel(
            "Connections by state", "short",
            [Query(f"sum by (state) (pg_stat_activity_count{{{pg}}})", "{{state}}"),
             Query(f"max(pg_settings_max_connections{{{pg}}})", "max_connections")]))
        .with_panel(timeseries_panel(
            "Transactions per second", "short",
            [Query(f"sum by (datname) (rate(pg_stat_database_xact_commit{{{pg}}}{rate}))",
                   "commit {{datname}}"),
             Query(f"sum by (datname) (rate(pg_stat_database_xact_rollback{{{pg}}}{rate}))",
                   "rollback {{datname}}")]))
        .with_panel(timeseries_panel(
            "Longest open transaction", "s",
            [Query(f"max by (datname, state) (pg_stat_activity_max_tx_duration{{{pg}}})",
                   "{{datname}} {{state}}")]))
        .with_panel(timeseries_panel(
            "Database size", "bytes",
            [Query(f"pg_database_size_bytes{{{pg}}}", "{{datname}}")]))
        .with_row(dashboard.Row("PgBouncer"))
        .with_panel(stat_panel("PgBouncer up", "bool",
                               [Query('pgbouncer_up{job="pgbouncer"}')]))
        .with_panel(stat_panel("Clients waiting", "short",
                               [Query(f"sum(pgbouncer_pools_client_waiting_connections{{{pb}}})")]))
        .with_panel(stat_panel("Client connections used", "percentunit",
                               [Query('max(pgbouncer_lists_used_clients{job="pgbouncer"}) / '
                                      'max(pgbouncer_config_max_client_connections'
                                      '{job="pgbouncer"})')]))
        .with_panel(stat_panel("Longest client wait", "s",
                               [Query(f"max(pgbouncer_pools_client_maxwait_seconds{{{pb}}})")]))
        .with_panel(timeseries_panel(
            "Server connections against the pool size", "short",
            [Query(f"sum by (database) (pgbouncer_pools_server_active_connections{{{pb}}})",
                   "active {{database}}"),
             Query(f"sum by (database) (pgbouncer_pools_server_idle_connections{{{pb}}})",
                   "idle {{database}}"),
             Query(f"max by (database) (pgbouncer_databases_pool_size{{{pb}}})",
                   "pool size {{database}}")]))
        .with_panel(timeseries_panel(
            "Client connections", "short",
            [Query(f"sum by (database) (pgbouncer_pools_client_active_connections{{{pb}}})",
                   "active {{database}}"),
             Query(f"sum by (database) (pgbouncer_pools_client_waiting_connections{{{pb}}})",
                   "waiting {{database}}")]))
        .with_panel(timeseries_panel(
            "Transactions and queries per second", "short",
            [Query(f"sum by (database) (rate(pgbouncer_stats_transactions_total{{{pb}}}{rate}))",
                   "transactions {{database}}"),
             Query(f"sum by (database) (rate(pgbouncer_stats_queries_total{{{pb}}}{rate}))",
                   "queries {{database}}")]))
        .with_panel(timeseries_panel(
            "Average query time and client wait", "s",
            [Query(f"sum by (database) (rate(pgbouncer_stats_query_duration_seconds_total"
                   f"{{{pb}}}{rate})) / sum by (database) (rate(pgbouncer_stats_queries_total"
                   f"{{{pb}}}{rate}))", "query {{database}}"),
             Query(f"sum by (database) (rate(pgbouncer_stats_client_wait_seconds_total"
                   f"{{{pb}}}{rate})) / sum by (database) (rate(pgbouncer_stats_queries_total"
                   f"{{{pb}}}{rate}))", "wait {{database}}")]))
    )


def redis() -> Any:
    dashboard = _sdk()[0]
    rate = "[$__rate_interval]"
    r = 'job="redis"'
    return (
        _base("civicpulse-redis", "CivicPulse / Redis",
              "The cache (redis_exporter) and how the app hosts experience it.", ["redis"])
        .with_row(dashboard.Row("Redis"))
        .with_panel(stat_panel("Redis up", "bool", [Query(f"redis_up{{{r}}}")]))
        .with_panel(stat_panel("Memory used of maxmemory", "percentunit",
                               [Query(f"redis_memory_used_bytes{{{r}}} / "
                                      f"redis_memory_max_bytes{{{r}}}")]))
        .with_panel(stat_panel("Uptime", "s", [Query(f"redis_uptime_in_seconds{{{r}}}")]))
        .with_panel(stat_panel("Connected clients", "short",
                               [Query(f"redis_connected_clients{{{r}}}")]))
        .with_panel(timeseries_panel(
            "Memory", "bytes",
            [Query(f"redis_memory_used_bytes{{{r}}}", "used"),
             Query(f"redis_memory_max_bytes{{{r}}}", "maxmemory")]))
        .with_panel(timeseries_panel(
            "Commands per second", "ops",
            [Query(f"rate(redis_commands_processed_total{{{r}}}{rate})", "commands")]))
        .with_panel(timeseries_panel(
            "Hit ratio", "percentunit",
            [Query(f"rate(redis_keyspace_hits_total{{{r}}}{rate}) / "
                   f"(rate(redis_keyspace_hits_total{{{r}}}{rate}) + "
                   f"rate(redis_keyspace_misses_total{{{r}}}{rate}))", "hits")]))
        .with_panel(timeseries_panel(
            "Evicted, expired and rejected per second", "short",
            [Query(f"rate(redis_evicted_keys_total{{{r}}}{rate})", "evicted keys"),
             Query(f"rate(redis_expired_keys_total{{{r}}}{rate})", "expired keys"),
             Query(f"rate(redis_rejected_connections_total{{{r}}}{rate})",
                   "rejected connections")]))
        .with_row(dashboard.Row("As the app sees it"))
        .with_panel(timeseries_panel(
            "App cache errors per second", "short",
            [Query(f'sum by (host, kind) (rate(civicpulse_cache_errors_total{{job="app"}}{rate}))',
                   "{{host}} {{kind}}")]))
        .with_panel(state_panel(
            "Cache circuit open", [Query('max by (host) (civicpulse_cache_circuit_open{job="app"})',
                                         "{{host}}")], span=12))
    )


def gameday() -> Any:
    dashboard = _sdk()[0]
    rate = "[$__rate_interval]"
    requests = 'civicpulse_http_requests_total{job="app"}'
    ok = 'civicpulse_http_requests_total{job="app",status!~"5.."}'
    errors = 'civicpulse_http_requests_total{job="app",status=~"5.."}'
    buckets = 'civicpulse_http_request_duration_seconds_bucket{job="app"}'
    faults = (dashboard.AnnotationQuery().name("GameDay faults").enable(True)
              .icon_color("red").datasource(_sdk()[5].DataSourceRef(type_val="grafana",
                                                                     uid="-- Grafana --"))
              .target(dashboard.AnnotationTarget().type("tags").tags([GAMEDAY_TAG])
                      .match_any(True).limit(100)))
    firing = (dashboard.AnnotationQuery().name("Firing alerts").enable(True)
              .icon_color("orange").datasource(_datasource())
              .expr('ALERTS{alertstate="firing",severity!="none"}'))
    return (
        _base("civicpulse-gameday", "CivicPulse / GameDay",
              "What users saw while a fault was injected. Red regions: the fault windows "
              f"the GameDay engine annotates (tag '{GAMEDAY_TAG}'); orange: firing alerts.",
              ["gameday"])
        .time("now-15m", "now").refresh("1s")
        .annotation(faults).annotation(firing)
        .with_panel(timeseries_panel(
            "Requests per second: answered and failed", "reqps",
            [Query(f"sum(rate({ok}{rate}))", "ok"), Query(f"sum(rate({errors}{rate}))", "5xx")],
            span=12))
        .with_panel(timeseries_panel(
            "5xx ratio", "percentunit",
            [Query(f"sum(rate({errors}{rate})) / sum(rate({requests}{rate}))", "5xx ratio"),
             Query(f"slo:sli_error:ratio_rate5m{SLO}", "SLI, 5m window")], span=12))
        .with_panel(timeseries_panel(
            "p99 latency", "s",
            [Query(f"histogram_quantile(0.99, sum by (le) (rate({buckets}{rate})))", "p99")],
            span=12))
        .with_panel(timeseries_panel(
            "Users created and audit events written per second", "short",
            [Query(f'sum(rate(civicpulse_users_created_total{{job="app"}}{rate}))', "users"),
             Query(f'sum(rate(civicpulse_audit_events_written_total{{job="app"}}{rate}))',
                   "audit events"),
             Query(f'sum(rate(civicpulse_db_errors_total{{job="app"}}{rate}))', "db errors")],
            span=12))
        .with_panel(state_panel(
            "Services up", [
                Query('min by (host) (up{job="app"})', "app {{host}}"),
                Query('min(nginx_up{job="nginx"})', "nginx"),
                Query('min(pgbouncer_up{job="pgbouncer"})', "pgbouncer"),
                Query('min(pg_up{job="postgres"})', "postgresql"),
                Query('min(redis_up{job="redis"})', "redis"),
                Query('max by (host) (civicpulse_cache_circuit_open{job="app"}) == 0',
                      "cache circuit closed {{host}}")],
            description="1: up. The cache circuit row reads 0 while the circuit is open."))
        .with_panel(state_panel(
            "Firing alerts", [Query('sum by (alertname) (ALERTS{alertstate="firing"})',
                                    "{{alertname}}")]))
    )


#: File name → builder of every dashboard we ship.
DASHBOARDS = {
    "overview.json": overview,
    "database.json": database,
    "redis.json": redis,
    "gameday.json": gameday,
}


def _finish(model: dict[str, Any]) -> dict[str, Any]:
    """Fields the SDK has no builder for, and stable panel ids."""
    for i, panel in enumerate(_all_panels(model), start=1):
        panel["id"] = i
    for annotation in model.get("annotations", {}).get("list", []):
        if annotation.get("expr"):
            # Prometheus annotations: one marker per firing alert, titled by name.
            annotation.update({"titleFormat": "{{alertname}}", "tagKeys": "severity,service",
                               "step": "5s", "useValueForTime": False})
    return model


def _all_panels(model: dict[str, Any]) -> list[dict[str, Any]]:
    panels = []
    for panel in model.get("panels", []):
        panels.append(panel)
        panels.extend(panel.get("panels", []))
    return panels


def build(name: str) -> dict[str, Any]:
    """The JSON model of one dashboard."""
    from grafana_foundation_sdk.cog.encoder import JSONEncoder

    model = json.loads(json.dumps(DASHBOARDS[name]().build(), cls=JSONEncoder))
    return _finish(model)


def render(name: str) -> str:
    return json.dumps(build(name), indent=2, sort_keys=True) + "\n"


def write_all(directory: Path = DASHBOARDS_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name in DASHBOARDS:
        path = directory / name
        path.write_text(render(name), encoding="utf-8")
        written.append(path)
    return written


def stale(directory: Path = DASHBOARDS_DIR) -> list[str]:
    """Dashboards whose checked-in JSON differs from what the code generates."""
    return [name for name in DASHBOARDS
            if not (directory / name).is_file()
            or (directory / name).read_text(encoding="utf-8") != render(name)]


def panel_queries(model: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, PromQL) of every Prometheus query in a dashboard model."""
    queries = []
    for panel in _all_panels(model):
        for target in panel.get("targets", []):
            if target.get("expr"):
                queries.append((panel.get("title", ""), target["expr"]))
    for annotation in model.get("annotations", {}).get("list", []):
        if annotation.get("expr"):
            queries.append((f"annotation {annotation.get('name')}", annotation["expr"]))
    for variable in model.get("templating", {}).get("list", []):
        query = variable.get("query")
        if isinstance(query, str) and query.startswith("label_values("):
            # label_values(<selector>, label): the selector is PromQL.
            queries.append((f"variable {variable.get('name')}",
                            query[len("label_values("):query.rindex(",")]))
    return queries
