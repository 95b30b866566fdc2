"""Cache-aside for user documents in Redis, guarded by a per-process circuit breaker.

Redis is an optimisation, never a dependency: every failure is counted, fed to the
breaker and swallowed, and callers fall back to PostgreSQL. Timeouts are short and
redis-py's own retries are disabled (redis-py >= 6 retries 3 times by default),
so a dead or partitioned Redis costs at most one connect or read timeout per call
until the breaker opens, and nothing while it stays open.
"""

from __future__ import annotations

import logging
import threading
import time

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from civicpulse.config import RedisConfig, get_config
from civicpulse.core import metrics
from civicpulse.core.circuit_breaker import CLOSED, CircuitBreaker

log = logging.getLogger(__name__)

_init_lock = threading.Lock()
_client: redis.Redis | None = None
_breaker: CircuitBreaker | None = None
_ttl = 300


def _error_kind(exc: Exception) -> str:
    # redis.TimeoutError is not a ConnectionError subclass, so check it first.
    if isinstance(exc, (redis.TimeoutError, TimeoutError)):
        return "timeout"
    if isinstance(exc, (redis.ConnectionError, ConnectionError)):
        return "connection"
    return "other"


def build_client(cfg: RedisConfig) -> redis.Redis:
    """A Redis client with bounded timeouts and no retries."""
    pool = redis.ConnectionPool.from_url(
        cfg.url,
        socket_timeout=cfg.socket_timeout,
        socket_connect_timeout=cfg.connect_timeout,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=0,
        max_connections=32,
        client_name="civicpulse",
    )
    return redis.Redis(connection_pool=pool)


def _on_breaker_change(state: str) -> None:
    metrics.CACHE_CIRCUIT_OPEN.set(0 if state == CLOSED else 1)
    log.warning("cache circuit breaker %s", state, extra={"breaker_state": state})


def _setup() -> tuple[redis.Redis, CircuitBreaker] | None:
    """This process's client and breaker, created on first use (after the fork)."""
    global _client, _breaker, _ttl
    cfg = get_config().redis
    if cfg is None:
        return None
    if _client is None or _breaker is None:
        with _init_lock:
            if _client is None or _breaker is None:
                _ttl = cfg.ttl
                client = build_client(cfg)
                _breaker = CircuitBreaker(cfg.breaker_failures, cfg.breaker_reset_s,
                                          on_state_change=_on_breaker_change,
                                          probe=client.ping)
                _client = client
    return _client, _breaker


def enabled() -> bool:
    """Whether a Redis cache is configured at all."""
    return get_config().redis is not None


def breaker_state() -> str:
    """closed, open, half_open, or disabled when no cache is configured."""
    setup = _setup()
    return "disabled" if setup is None else setup[1].state


def _failed(breaker: CircuitBreaker, op: str, exc: Exception) -> None:
    kind = _error_kind(exc)
    metrics.CACHE_ERRORS.labels(kind=kind).inc()
    breaker.record_failure()
    log.warning("cache %s failed: %s", op, exc, extra={"cache_error": kind})


def fetch(key: str) -> bytes | None:
    """Cached value, or None on a miss, when disabled, or when Redis is unhealthy."""
    setup = _setup()
    if setup is None:
        return None
    client, breaker = setup
    if not breaker.allow():
        return None
    try:
        value = client.get(key)
    except Exception as exc:  # any cache failure degrades to a miss
        _failed(breaker, "get", exc)
        return None
    breaker.record_success()
    return value


def store(key: str, value: bytes) -> None:
    """Best-effort write with the configured TTL; failures only count against the breaker."""
    setup = _setup()
    if setup is None:
        return
    client, breaker = setup
    if not breaker.allow():
        return
    try:
        client.set(key, value, ex=_ttl)
    except Exception as exc:
        _failed(breaker, "set", exc)
        return
    breaker.record_success()


def ping() -> float:
    """Round-trip a PING (bypassing the breaker); returns latency in ms or raises."""
    setup = _setup()
    if setup is None:
        raise RuntimeError("cache disabled")
    start = time.perf_counter()
    setup[0].ping()
    return (time.perf_counter() - start) * 1000.0
