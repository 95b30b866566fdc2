"""Gunicorn settings: `gunicorn -c python:civicpulse.gunicorn_conf civicpulse.wsgi`.

Everything comes from the `gunicorn` section of the JSON config. Designed to sit
behind nginx on the same host: loopback bind, X-Forwarded-* trusted only from the
loopback proxy, no access log file (the app logs one JSON line per request).

With `gunicorn.metrics_bind` set, the master serves /metrics on that address itself
(`when_ready`), summing the workers' value files: a scrape never queues behind busy
workers, and a dead master refuses it (`post_fork` closes the workers' inherited copy
of the socket). Without it the workers serve /metrics on `bind`, as in tests and dev.
"""

from __future__ import annotations

import glob
import logging
import os
import shutil
import tempfile
import time
from typing import Any

from gunicorn.glogging import Logger

from civicpulse.config import get_config
from civicpulse.jsonlog import json_formatters, json_stream_handler

_cfg = get_config()
_g = _cfg.gunicorn

# prometheus_client picks its multiprocess value class when first imported, so
# the directory must be in the environment before that import, here in the
# master, and the forked workers inherit it. Without an explicit directory a
# private one is made, because per-worker registries would silently under-count.
_owned_metrics_dir = ""
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    if _cfg.metrics_dir:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = _cfg.metrics_dir
    else:
        _owned_metrics_dir = tempfile.mkdtemp(
            prefix="civicpulse-metrics-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = _owned_metrics_dir

from prometheus_client import multiprocess  # noqa: E402  (needs the env var above)

wsgi_app = "civicpulse.wsgi:application"
bind = [_g.bind]
workers = _g.workers
worker_class = _g.worker_class
threads = _g.threads
timeout = _g.timeout
graceful_timeout = _g.graceful_timeout
keepalive = _g.keepalive
max_requests = _g.max_requests
max_requests_jitter = _g.max_requests_jitter
# Each worker opens its own DB and Redis connections after fork.
preload_app = False
# The heartbeat file is touched on every request; keep it off disk.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
forwarded_allow_ips = _g.forwarded_allow_ips
accesslog = None
errorlog = "-"
loglevel = _cfg.log_level.lower()
proc_name = "civicpulse"
raw_env = ["DJANGO_SETTINGS_MODULE=civicpulse.settings"]

logconfig_dict: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": json_formatters(),
    "handlers": {
        "error_console": json_stream_handler("ext://sys.stderr"),
        "console": json_stream_handler("ext://sys.stdout"),
    },
    "loggers": {
        "gunicorn.error": {"handlers": ["error_console"], "level": _cfg.log_level,
                           "propagate": False},
        "gunicorn.access": {"handlers": ["console"], "level": _g.access_log_level,
                            "propagate": False},
    },
}


class AccessLevelLogger(Logger):
    """Gunicorn's logger, minus the access-line work when `gunicorn.access` is muted.

    A logging config turns Gunicorn's access logging on whatever the logger's level,
    and it builds every line's atoms before the level check; the app already logs
    one JSON line per request, so by default (`access_log_level` WARNING) skip it all.
    """

    def access(self, resp: Any, req: Any, environ: Any, request_time: Any) -> None:
        if self.access_log.isEnabledFor(logging.INFO):
            super().access(resp, req, environ, request_time)


logger_class = AccessLevelLogger


def on_starting(server: Any) -> None:
    """Drop the previous run's value files so counters restart from zero."""
    path = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    os.makedirs(path, exist_ok=True)
    for stale in glob.glob(os.path.join(path, "*.db")):
        os.remove(stale)


# The master's metrics listener (None: the workers serve /metrics on `bind`).
_metrics_server: Any = None
_METRICS_BIND_ATTEMPTS = 5


def when_ready(server: Any) -> None:
    """Master, listeners bound, no worker forked yet: start serving /metrics here."""
    global _metrics_server
    address = _g.metrics_address
    if address is None:
        return
    from civicpulse.core.metrics import MasterMetricsServer

    # Like Gunicorn's own bind: a previous master's socket may take a moment to go.
    for attempt in range(1, _METRICS_BIND_ATTEMPTS + 1):
        try:
            # Gunicorn empties LISTENERS when it stops accepting (SIGTERM/SIGINT/SIGQUIT).
            _metrics_server = MasterMetricsServer(
                *address, serving=lambda: bool(server.LISTENERS)).start()
            break
        except OSError as exc:
            server.log.error("metrics: cannot listen on %s (%s), attempt %d of %d",
                             _g.metrics_bind, exc.strerror or exc, attempt,
                             _METRICS_BIND_ATTEMPTS)
            if attempt == _METRICS_BIND_ATTEMPTS:
                # Gunicorn prints a RuntimeError and exits 1; the supervisor retries.
                raise RuntimeError(f"{_cfg.source}: gunicorn.metrics_bind "
                                   f"{_g.metrics_bind}: {exc.strerror or exc}") from exc
            time.sleep(1)
    server.log.info("Serving metrics at http://%s/metrics from the master (%s)",
                    _metrics_server.address, os.getpid())


def post_fork(server: Any, worker: Any) -> None:
    """Worker: only the master may hold the metrics listener."""
    if _metrics_server is not None:
        _metrics_server.close_inherited()


def child_exit(server: Any, worker: Any) -> None:
    """Forget a dead worker's live gauges (its counters keep counting in the sum)."""
    multiprocess.mark_process_dead(worker.pid)


def on_exit(server: Any) -> None:
    if _owned_metrics_dir:
        shutil.rmtree(_owned_metrics_dir, ignore_errors=True)
