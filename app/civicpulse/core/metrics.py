"""Prometheus metrics. Names and labels are a contract with the alerting rules.

Under Gunicorn every worker is a separate process; with PROMETHEUS_MULTIPROC_DIR
set, prometheus_client keeps values in per-process mmap files and /metrics sums
them (see gunicorn_conf.py for the directory's lifecycle). Without it (tests,
manage.py) the default in-process registry is used.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0,
                    7.5, 10.0)

HTTP_REQUESTS = Counter(
    "civicpulse_http_requests_total", "HTTP requests by view, method and status.",
    ["view", "method", "status"],
)
HTTP_DURATION = Histogram(
    "civicpulse_http_request_duration_seconds", "HTTP request duration by view and method.",
    ["view", "method"], buckets=DURATION_BUCKETS,
)
DB_ERRORS = Counter("civicpulse_db_errors_total", "Database errors by kind.", ["kind"])
CACHE_ERRORS = Counter("civicpulse_cache_errors_total", "Redis cache errors by kind.", ["kind"])
CACHE_CIRCUIT_OPEN = Gauge(
    "civicpulse_cache_circuit_open", "1 while any live worker's cache circuit breaker is open.",
    multiprocess_mode="livemax",
)
AUDIT_WRITTEN = Counter("civicpulse_audit_events_written_total", "Audit events committed.")
AUDIT_FAILURES = Counter(
    "civicpulse_audit_write_failures_total", "Audit writes that failed (transaction rolled back).",
)
USERS_CREATED = Counter("civicpulse_users_created_total", "Users created (committed).")

# Pre-create the label sets the alert rules reference so they read 0, not "absent".
for _kind in ("operational", "integrity", "timeout", "other"):
    DB_ERRORS.labels(kind=_kind)
for _kind in ("timeout", "connection", "other"):
    CACHE_ERRORS.labels(kind=_kind)
CACHE_CIRCUIT_OPEN.set(0)


def render() -> tuple[bytes, str]:
    """Exposition text for this process, or for all workers in multiprocess mode."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
