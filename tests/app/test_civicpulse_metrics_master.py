"""/metrics from the Gunicorn master (`gunicorn.metrics_bind`): never behind busy workers.

Issue #5: with every sync worker busy (200 ms per PgBouncer round trip), Prometheus'
scrape of /metrics on the workers' port queued and timed out, so `up` went 0 and a
false AppAllHostsDown paged. The master now serves the workers' summed metrics on a
port of its own; only it holds that socket, so a dead master refuses the scrape.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time

import httpx
import pytest
from civicpulse_checks import metric_value
from civicpulse_stack import HOST, free_port, wait_until

from infra.procfs import socket_holders

pytestmark = pytest.mark.slow

#: Well under Prometheus' lab scrape timeout (1 s).
SCRAPE_TIMEOUT_S = 0.5


def start_one_worker(stack, name: str):
    """One sync worker, the master serving /metrics on its own port."""
    config = stack.app_config(gunicorn={"bind": f"{HOST}:{free_port()}",
                                        "metrics_bind": f"{HOST}:{free_port()}",
                                        "workers": 1, "worker_class": "sync", "timeout": 30})
    return stack.gunicorn(name, config)


@pytest.fixture(scope="module")
def one_worker(stack):
    server = start_one_worker(stack, "metrics-master")
    yield server
    server.stop()


@pytest.fixture
def doomed(stack, request):
    """A Gunicorn of its own for a test that kills or stops it."""
    server = start_one_worker(stack, f"metrics-{request.node.name}")
    yield server
    server.stop()


@contextlib.contextmanager
def slow_request(stack, server, username: str):
    """The worker busy with a user creation that waits on a table lock (≤ 2 s)."""
    with stack.postgres.connect("civicpulse") as locker:
        locker.autocommit = False
        # The user INSERT waits for this lock until the role's statement_timeout (2 s).
        locker.execute("LOCK TABLE civicpulse_user IN ACCESS EXCLUSIVE MODE")
        answered: list[int] = []

        def create() -> None:
            with contextlib.suppress(httpx.HTTPError):
                resp = httpx.post(f"{server.base_url}/api/users/", timeout=15,
                                  json={"username": username, "email": "b@example.org"})
                answered.append(resp.status_code)

        request = threading.Thread(target=create)
        request.start()
        try:
            wait_until(lambda: stack.postgres.sql(
                "SELECT count(*) FROM pg_stat_activity WHERE usename = 'civicpulse' "
                "AND wait_event_type = 'Lock'")[0][0] >= 1,
                "the worker's INSERT to wait for the lock", timeout=5, interval=0.02)
            yield answered
        finally:
            locker.rollback()
            request.join(20)


def listeners(address: str, port: int) -> set[int]:
    """Pids holding a listening TCP socket on address:port (from /proc)."""
    return socket_holders(address, port)


def test_only_the_master_holds_the_metrics_socket(one_worker):
    (worker,) = one_worker.worker_pids()
    assert listeners(HOST, one_worker.metrics_port) == {one_worker.proc.pid}
    # The app port is shared, as Gunicorn does: the worker accepts on it.
    assert {one_worker.proc.pid, worker} <= listeners(HOST, one_worker.port)


def test_master_sums_the_workers_and_counts_its_scrapes(one_worker):
    before = httpx.get(one_worker.metrics_url, timeout=2).text
    with httpx.Client(base_url=one_worker.base_url, timeout=5) as client:
        for _ in range(5):
            assert client.get("/civicpulse/health/").status_code == 200
    after = httpx.get(one_worker.metrics_url, timeout=2).text
    health = {"view": "health", "method": "GET", "status": "200"}
    assert (metric_value(after, "civicpulse_http_requests_total", **health)
            - metric_value(before, "civicpulse_http_requests_total", **health)) == 5
    # Every scrape counts as a request of the metrics view: the counter restarts with
    # the master, which is AppHostDown's restart signal.
    scrapes = {"view": "metrics", "method": "GET", "status": "200"}
    assert (metric_value(after, "civicpulse_http_requests_total", **scrapes)
            > metric_value(before, "civicpulse_http_requests_total", **scrapes) >= 1)
    assert httpx.get(one_worker.metrics_url.replace("/metrics", "/other"),
                     timeout=2).status_code == 404


def test_scrape_answers_while_every_worker_is_busy(stack, one_worker, unique):
    """The only worker is stuck in a slow request; the master still answers at once."""
    with slow_request(stack, one_worker, f"busy{unique}") as answered:
        started = time.monotonic()
        scrape = httpx.get(one_worker.metrics_url, timeout=SCRAPE_TIMEOUT_S)
        took = time.monotonic() - started
        assert scrape.status_code == 200 and "civicpulse_http_requests_total" in scrape.text
        assert took < SCRAPE_TIMEOUT_S
        # What Prometheus saw before the fix: the workers' /metrics queues.
        with pytest.raises(httpx.TimeoutException):
            httpx.get(f"{one_worker.base_url}/metrics", timeout=SCRAPE_TIMEOUT_S)
        assert not answered, "the slow request ended before the scrape was checked"
    assert answered and answered[0] in (201, 503)


def test_killed_master_means_a_refused_scrape(doomed):
    master = doomed.proc.pid
    (worker,) = doomed.worker_pids()
    os.kill(master, signal.SIGKILL)
    doomed.proc.wait(10)
    started = time.monotonic()
    with pytest.raises(httpx.ConnectError):
        httpx.get(doomed.metrics_url, timeout=2)
    # Refused at once, not a timeout: the orphaned worker never held the socket.
    assert time.monotonic() - started < 1
    assert worker not in listeners(HOST, doomed.metrics_port)


def test_stopping_master_fails_the_scrape_while_its_worker_finishes(stack, doomed, unique):
    """SIGTERM: the master stops accepting at once, but waits (up to graceful_timeout)
    for its busy worker; the scrape must not say "up" meanwhile."""
    with slow_request(stack, doomed, f"stop{unique}") as answered:
        assert httpx.get(doomed.metrics_url, timeout=SCRAPE_TIMEOUT_S).status_code == 200
        os.kill(doomed.proc.pid, signal.SIGTERM)
        # A 503 (not a refusal) shows the master still there, waiting for its worker.
        scrape = wait_until(
            lambda: (r := httpx.get(doomed.metrics_url, timeout=SCRAPE_TIMEOUT_S)
                     ).status_code == 503 and r,
            "the master to fail scrapes once it stops accepting", timeout=1, interval=0.02)
        assert "shutting down" in scrape.text
        assert doomed.proc.poll() is None and not answered, "the worker finished too soon"
    doomed.proc.wait(30)
    # The worker finished the request it held before the master exited.
    assert answered and answered[0] in (201, 503)
