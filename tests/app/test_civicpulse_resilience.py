"""Dependency failures: Redis down or partitioned, PostgreSQL down or partitioned.

Tests that stop a shared service restart it in `finally` and wait for a real probe,
so later tests see a healthy stack.
"""

from __future__ import annotations

import threading
import time

import httpx
import pytest
from civicpulse_checks import blackhole, metric_value
from civicpulse_stack import HOST, free_port, wait_until

pytestmark = pytest.mark.slow


def scrape(http: httpx.Client) -> str:
    return http.get("/metrics").text


def new_user(http: httpx.Client, name: str) -> dict:
    response = http.post("/api/users/", json={"username": name, "email": f"{name}@example.org"})
    assert response.status_code == 201, response.text
    return response.json()


def timed_get(http: httpx.Client, path: str) -> tuple[httpx.Response, float]:
    start = time.monotonic()
    response = http.get(path)
    return response, time.monotonic() - start


def test_reads_survive_redis_outage_and_breaker_recovers(http, stack, unique):
    user = new_user(http, f"rd{unique}")
    errors_before = metric_value(scrape(http), "civicpulse_cache_errors_total")
    stack.redis.stop()
    try:
        # Enough reads that both workers see >= breaker_failures errors and open.
        for _ in range(16):
            response, elapsed = timed_get(http, f"/api/users/{user['id']}/")
            assert response.status_code == 200
            assert response.json() == user
            assert elapsed < 1.0
        text = scrape(http)
        assert metric_value(text, "civicpulse_cache_circuit_open") == 1
        assert metric_value(text, "civicpulse_cache_errors_total") > errors_before
        assert metric_value(text, "civicpulse_cache_errors_total", kind="connection") > 0

        health, elapsed = timed_get(http, "/civicpulse/health/")
        assert health.status_code == 200 and elapsed <= 2.0
        body = health.json()
        assert body["status"] == "degraded"
        assert body["checks"]["database"]["status"] == "ok"
        assert body["checks"]["cache"]["status"] == "down"
        assert isinstance(body["checks"]["cache"]["error"], str)
    finally:
        stack.redis.start()

    # After the cool-down (breaker_reset_s=2) every worker's breaker probes Redis by
    # itself and closes: no cache traffic needed (scrapes do not touch the cache).
    def closed() -> bool:
        return metric_value(scrape(http), "civicpulse_cache_circuit_open") == 0

    wait_until(closed, "cache circuit breaker to close", timeout=20, interval=0.3)
    assert http.get("/civicpulse/health/").json()["status"] == "ok"


@pytest.fixture
def partitioned_cache(django_app, monkeypatch):
    """Point the in-process app's cache at a peer that never answers."""
    from civicpulse.config import RedisConfig
    from civicpulse.core import cache
    from civicpulse.core.circuit_breaker import CircuitBreaker

    with blackhole() as port:
        cfg = RedisConfig(url=f"redis://:pw@{HOST}:{port}/0", socket_timeout=0.25,
                          connect_timeout=0.25, breaker_failures=3, breaker_reset_s=60)
        monkeypatch.setattr(cache, "_client", cache.build_client(cfg))
        monkeypatch.setattr(cache, "_breaker", CircuitBreaker(
            cfg.breaker_failures, cfg.breaker_reset_s,
            on_state_change=cache._on_breaker_change))
        yield cache
    cache._on_breaker_change("closed")


def test_partitioned_redis_reads_bounded_then_breaker_skips_it(client, partitioned_cache, stack,
                                                               unique):
    from civicpulse.core import metrics

    response = client.post("/api/users/", {"username": f"bh{unique}", "email": "b@example.org"},
                           content_type="application/json")
    assert response.status_code == 201
    path = f"/api/users/{response.json()['id']}/"

    timings = []
    for _ in range(4):
        start = time.monotonic()
        read = client.get(path)
        timings.append(time.monotonic() - start)
        assert read.status_code == 200 and read.json() == response.json()
    # A read pays at most a GET and a SET timeout (0.25 s each) while closed...
    assert max(timings[:2]) < 0.8
    # ...and nothing once 3 failures opened the breaker.
    assert partitioned_cache.breaker_state() == "open"
    assert timings[-1] < 0.1
    assert metrics.CACHE_CIRCUIT_OPEN._value.get() == 1
    assert metrics.CACHE_ERRORS.labels(kind="timeout")._value.get() >= 3

    start = time.monotonic()
    health = client.get("/civicpulse/health/")
    assert time.monotonic() - start <= 2.0
    assert health.status_code == 200 and health.json()["status"] == "degraded"


def test_redis_client_never_retries(django_app):
    from civicpulse.config import get_config
    from civicpulse.core import cache

    client = cache.build_client(get_config().redis)
    kwargs = client.connection_pool.connection_kwargs
    assert kwargs["retry"].get_retries() == 0
    assert kwargs["socket_timeout"] == 0.25 and kwargs["socket_connect_timeout"] == 0.25
    assert client.connection_pool.make_connection().retry.get_retries() == 0


def test_health_503_when_postgres_down(http, stack):
    stack.postgres.stop()
    try:
        for _ in range(2):  # the second check joins the still-pending probe
            response, elapsed = timed_get(http, "/civicpulse/health/")
            assert response.status_code == 503
            assert elapsed <= 2.0
            body = response.json()
            assert body["status"] == "down"
            assert body["checks"]["database"]["status"] == "down"
            assert body["checks"]["database"]["error"]
            assert body["checks"]["cache"]["status"] == "ok"
    finally:
        stack.postgres.start()
    wait_until(lambda: http.get("/civicpulse/health/").status_code == 200,
               "health after PostgreSQL restart", timeout=30, interval=0.5)


def test_health_503_when_database_partitioned(stack):
    """A database host that accepts TCP but never answers: bounded, not hung."""
    with blackhole() as port:
        config = stack.app_config(
            database={"host": HOST, "port": port},
            gunicorn={"bind": f"{HOST}:{free_port()}", "workers": 1})
        server = stack.gunicorn("db-partitioned", config)
        try:
            with httpx.Client(base_url=server.base_url, timeout=10) as http:
                for _ in range(2):
                    response, elapsed = timed_get(http, "/civicpulse/health/")
                    assert response.status_code == 503 and elapsed <= 2.0
                    assert response.json()["status"] == "down"
        finally:
            server.stop()


def test_statement_timeout_applies_on_every_pooled_connection(django_app):
    """The role-level timeout reaches every PgBouncer server connection."""
    from civicpulse.core import db_errors
    from django.db import OperationalError, connection, transaction

    barrier = threading.Barrier(5)
    seen: list[str] = []

    def show_timeout() -> None:
        # Holding a transaction open while the others start forces PgBouncer to
        # hand each thread a different server connection.
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                barrier.wait(timeout=10)
                cursor.execute("SHOW statement_timeout")
                seen.append(cursor.fetchone()[0])
                barrier.wait(timeout=10)
        finally:
            connection.close()

    threads = [threading.Thread(target=show_timeout) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert seen == ["2s"] * 5

    start = time.monotonic()
    with pytest.raises(OperationalError) as caught, connection.cursor() as cursor:
        cursor.execute("SELECT pg_sleep(10)")
    assert time.monotonic() - start < 4
    assert db_errors.classify(caught.value) == "timeout"
    connection.close()


def test_persistent_connections_survive_pgbouncer_restart(stack, unique):
    """conn_max_age > 0: a connection PgBouncer dropped is replaced before it is used.

    Django's CONN_HEALTH_CHECKS are off (a round trip per request); the views poll
    the socket instead (database.close_if_closed_by_peer)."""
    config = stack.app_config(database={"conn_max_age": 300},
                              gunicorn={"bind": f"{HOST}:{free_port()}", "workers": 1})
    server = stack.gunicorn("persistent", config)
    try:
        with httpx.Client(base_url=server.base_url, timeout=10) as http:
            new_user(http, f"pa{unique}")
            stack.pgbouncer.stop()
            stack.pgbouncer.start(stack.app_password)
            new_user(http, f"pb{unique}")
            assert http.get("/civicpulse/health/").json()["status"] == "ok"
    finally:
        server.stop()


def post_in_process(client, name: str):
    return client.post("/api/users/", {"username": name, "email": f"{name}@example.org"},
                       content_type="application/json")


def test_dropped_connection_is_replaced_before_the_request(client, stack, unique):
    """The socket poll spots a connection PgBouncer closed, and leaves live ones alone."""
    from civicpulse.database import close_if_closed_by_peer
    from django.db import connection

    # The test client never closes connections: persistent, as with conn_max_age > 0.
    assert post_in_process(client, f"lv1{unique}").status_code == 201
    healthy = connection.connection
    close_if_closed_by_peer(connection)
    assert connection.connection is healthy  # no false alarm on a live connection

    stack.pgbouncer.stop()
    stack.pgbouncer.start(stack.app_password)
    response = post_in_process(client, f"lv2{unique}")
    assert response.status_code == 201, response.content
    assert connection.connection is not healthy


def test_broken_connection_fails_one_request_and_the_next_recovers(client, stack, unique,
                                                                   monkeypatch):
    """Without the socket poll, the request that finds the dead connection gets a 503 and
    Django's end-of-request cleanup (errors_occurred -> is_usable() -> close) makes the
    next request reconnect: the safety net for a connection that dies mid-request."""
    from civicpulse.core import metrics, views
    from django.db import close_old_connections, connection

    monkeypatch.setattr(views, "close_if_closed_by_peer", lambda connection: None)
    assert post_in_process(client, f"br1{unique}").status_code == 201
    stack.pgbouncer.stop()
    stack.pgbouncer.start(stack.app_password)
    operational = metrics.DB_ERRORS.labels(kind="operational")
    before = operational._value.get()

    assert post_in_process(client, f"br2{unique}").status_code == 503
    assert operational._value.get() == before + 1
    # What Django's WSGI handler runs on request_finished (the test client skips it).
    close_old_connections()
    assert connection.connection is None
    assert post_in_process(client, f"br2{unique}").status_code == 201
