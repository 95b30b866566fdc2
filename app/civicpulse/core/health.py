"""Dependency checks for /civicpulse/health/, bounded in time whatever the network does.

psycopg cannot time out below 2 s on connect, and PgBouncer queues a query while
PostgreSQL is unreachable, so the database probe runs in a helper thread and the
request waits for it only until a deadline. Concurrent and follow-up checks join a
still-running probe instead of stacking up threads behind a dead database.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from django.db import DatabaseError, connection

from civicpulse.core import cache, db_errors

log = logging.getLogger(__name__)

DB_DEADLINE_S = 1.5

_lock = threading.Lock()
_executor: ThreadPoolExecutor | None = None
_inflight: Future[float] | None = None


def _probe_database() -> float:
    # Runs in the helper thread, which has its own Django connection; it is closed
    # every time so a connection broken by an outage is never reused.
    start = time.perf_counter()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
        return (time.perf_counter() - start) * 1000.0
    except DatabaseError as exc:
        db_errors.record(exc)
        raise
    finally:
        connection.close()


def _start_db_probe() -> Future[float]:
    global _executor, _inflight
    with _lock:
        if _inflight is None or _inflight.done():
            if _executor is None:
                _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="health-db")
            _inflight = _executor.submit(_probe_database)
        return _inflight


def _describe(exc: BaseException) -> str:
    first_line = (str(exc).strip().splitlines() or [""])[0][:160]
    return f"{type(exc).__name__}: {first_line}" if first_line else type(exc).__name__


def _check_cache() -> dict[str, Any]:
    if not cache.enabled():
        return {"status": "disabled"}
    try:
        latency = cache.ping()
    except Exception as exc:  # any failure means the cache is down
        log.warning("health: cache check failed: %s", exc)
        return {"status": "down", "error": _describe(exc)}
    return {"status": "ok", "latency_ms": round(latency, 3)}


def _await_db(probe: Future[float], timeout: float) -> dict[str, Any]:
    try:
        latency = probe.result(timeout=max(timeout, 0.0))
    except FutureTimeout:
        log.warning("health: database check timed out after %.1fs", DB_DEADLINE_S)
        return {"status": "down", "error": f"timed out after {DB_DEADLINE_S}s"}
    except Exception as exc:
        log.warning("health: database check failed: %s", exc)
        return {"status": "down", "error": _describe(exc)}
    return {"status": "ok", "latency_ms": round(latency, 3)}


def run_checks() -> tuple[int, dict[str, Any]]:
    """(HTTP status, body). The cache check overlaps with the database probe."""
    deadline = time.monotonic() + DB_DEADLINE_S
    probe = _start_db_probe()
    cache_check = _check_cache()
    db_check = _await_db(probe, deadline - time.monotonic())
    if db_check["status"] != "ok":
        status, overall = 503, "down"
    elif cache_check["status"] == "down":
        status, overall = 200, "degraded"
    else:
        status, overall = 200, "ok"
    return status, {"status": overall, "checks": {"database": db_check, "cache": cache_check}}
