"""Prometheus metrics. Names and labels are a contract with the alerting rules.

Under Gunicorn every worker is a separate process; with PROMETHEUS_MULTIPROC_DIR
set, prometheus_client keeps values in per-process mmap files and /metrics sums
them (see gunicorn_conf.py for the directory's lifecycle). Without it (tests,
manage.py) the default in-process registry is used.

With `gunicorn.metrics_bind` set, the Gunicorn master serves that sum itself on a
port of its own (`MasterMetricsServer`), so a scrape never waits for a free worker:
busy or stuck workers still show up as slow requests instead of a dead host.
"""

from __future__ import annotations

import functools
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    make_wsgi_app,
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


@functools.cache
def http_request_metrics(view: str, method: str, status: int) -> tuple[Any, Any]:
    """The request counter's and duration histogram's children for one label set.

    `labels()` validates and locks on every call; the label sets are few (the URL
    names, the folded methods, the statuses), so each child is looked up once.
    """
    return HTTP_REQUESTS.labels(view, method, str(status)), HTTP_DURATION.labels(view, method)
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


# --- served by the Gunicorn master ---------------------------------------------------

#: Held around every metric update the master's scrape thread makes, and by the
#: forking thread across fork() (os.register_at_fork). prometheus_client guards its
#: multiprocess values with one module-wide threading.Lock: a worker forked while the
#: scrape thread held it would inherit it locked and hang on its first metric update.
_FORK_GUARD = threading.Lock()
_fork_guard_registered = False
METRICS_PATH = "/metrics"


def _register_fork_guard() -> None:
    global _fork_guard_registered
    if not _fork_guard_registered:
        os.register_at_fork(before=_FORK_GUARD.acquire, after_in_parent=_FORK_GUARD.release,
                            after_in_child=_FORK_GUARD.release)
        _fork_guard_registered = True


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    request_queue_size = 64


class _QuietHandler(WSGIRequestHandler):
    """No stderr line per scrape (the master's log is Gunicorn's JSON log)."""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
        pass


class MasterMetricsServer:
    """/metrics of all workers, served from the Gunicorn master on its own listener.

    Start it in the master once its own listeners are bound (Gunicorn's `when_ready`),
    and call `close_inherited()` in every forked worker (`post_fork`): only the master
    may hold the metrics socket, so that a dead master means a refused scrape (that is
    how AppHostDown tells a crashed host), never one that hangs in a worker's backlog.

    Each scrape is counted like a request to the workers' /metrics view
    (`civicpulse_http_requests_total{view="metrics"}`): the counter restarts with the
    master, so a restart faster than the scrape interval still shows as a reset.

    `serving()` says whether the master still accepts requests; once it has closed its
    listeners (a stop: the workers only finish what they hold) scrapes get a 503, so
    Prometheus sees the host down as soon as users do, not when the last worker exits.
    """

    def __init__(self, host: str, port: int,
                 serving: Callable[[], bool] = lambda: True) -> None:
        self._serving = serving
        if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            raise RuntimeError("the master's metrics server needs PROMETHEUS_MULTIPROC_DIR")
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        self._exposition = make_wsgi_app(registry)
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                    flags=socket.AI_PASSIVE)[0][0]
        server_class = type("MetricsHTTPServer", (_ThreadingWSGIServer,),
                            {"address_family": family})
        self.httpd = make_server(host, port, self._app, server_class,
                                 handler_class=_QuietHandler)
        self.address = f"{host}:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever,
                                        name="civicpulse-metrics", daemon=True)

    def start(self) -> MasterMetricsServer:
        _register_fork_guard()
        self._thread.start()
        return self

    def close_inherited(self) -> None:
        """In a forked worker: drop the copy of the listening socket (no thread runs it)."""
        self.httpd.socket.close()

    def _app(self, environ: dict[str, Any],
             start_response: Callable[..., Any]) -> Iterable[bytes]:
        started = time.perf_counter()
        method = "GET" if environ.get("REQUEST_METHOD") == "GET" else "other"
        view = "metrics" if environ.get("PATH_INFO") == METRICS_PATH else "unmatched"
        status = "500"

        def recording_start_response(line: str, headers: list[tuple[str, str]],
                                     exc_info: Any = None) -> Any:
            nonlocal status
            status = line.split(" ", 1)[0]
            return start_response(line, headers, exc_info)

        try:
            if view != "metrics":
                recording_start_response("404 Not Found", [("Content-Type", "text/plain")])
                return [f"only {METRICS_PATH} here\n".encode()]
            if not self._serving():
                recording_start_response("503 Service Unavailable",
                                         [("Content-Type", "text/plain")])
                return [b"gunicorn is shutting down: no longer accepting requests\n"]
            return self._exposition(environ, recording_start_response)
        finally:
            with _FORK_GUARD:
                HTTP_REQUESTS.labels(view, method, status).inc()
                HTTP_DURATION.labels(view, method).observe(time.perf_counter() - started)
