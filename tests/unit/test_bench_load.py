"""The load client against a tiny in-process HTTP server: bounds, kinds, read mix."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import ThreadingHTTPServer

import pytest
from fake_http import JsonHandler

from bench.load import LoadSpec, run_load


class FakeApp(JsonHandler):
    seen: list[str] = []
    lock = threading.Lock()
    delay_s = 0.0

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = self.read_json()
        if FakeApp.delay_s:
            time.sleep(FakeApp.delay_s)
        with FakeApp.lock:
            FakeApp.seen.append(body["username"])
            count = len(FakeApp.seen)
        if count % 5 == 0:
            self.send_json(429, {"error": "rate limited"})
        elif count % 7 == 0:
            self.send_json(503, {"error": "database unavailable"})
        else:
            self.send_json(201, {"id": count, "username": body["username"]})

    def do_GET(self) -> None:  # noqa: N802
        self.send_json(200 if self.path.startswith("/api/users/") else 404, {})


@pytest.fixture
def fake_app() -> Iterator[str]:
    FakeApp.seen = []
    FakeApp.delay_s = 0.0
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeApp)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_write_load_counts_every_outcome_kind(fake_app):
    out = run_load(LoadSpec(fake_app, users=4, duration_s=20, max_requests=70, timeout_s=5,
                            variant="write", prefix="t.a."))
    assert out.requests == out.issued == len(FakeApp.seen) == 70  # bounded by count
    assert out.kinds["rate_limited_429"] == 14 and out.kinds["http_503"] == 8
    assert out.ok == out.created == 48
    assert len(set(FakeApp.seen)) == 70 and all(u.startswith("t.a.") for u in FakeApp.seen)
    assert len(out.latencies_s) == 70 and len(out.ok_latencies_s) == 48
    assert out.client_cpu_s > 0 and out.elapsed_s > 0


def test_duration_bounds_the_run(fake_app):
    started = time.monotonic()
    out = run_load(LoadSpec(fake_app, users=2, duration_s=0.3, max_requests=1_000_000,
                            timeout_s=5, variant="write", prefix="t.b."))
    assert time.monotonic() - started < 3
    assert 0 < out.requests < 1_000_000


def test_read_mix_reads_users_it_created(fake_app):
    out = run_load(LoadSpec(fake_app, users=3, duration_s=5, max_requests=100, timeout_s=5,
                            variant="read-mix", prefix="t.c."))
    writes = len(FakeApp.seen)
    assert out.requests == 100
    assert 15 <= writes <= 40  # about one create in five
    assert out.ok == out.requests - out.kinds["rate_limited_429"] - out.kinds["http_503"]


def test_timeouts_are_an_outcome_and_bounded(fake_app):
    FakeApp.delay_s = 2.0
    started = time.monotonic()
    out = run_load(LoadSpec(fake_app, users=2, duration_s=0.1, max_requests=10, timeout_s=0.3,
                            variant="write", prefix="t.d."))
    assert time.monotonic() - started < 1.9
    assert out.kinds == {"timeout": 2}


def test_connection_refused_is_an_outcome():
    out = run_load(LoadSpec("http://127.0.0.1:9", users=1, duration_s=0.2, max_requests=3,
                            timeout_s=1, variant="write", prefix="t.e."))
    assert out.kinds == {"connect_error": 3}


def test_non_loopback_is_refused():
    with pytest.raises(ValueError, match="non-loopback"):
        run_load(LoadSpec("http://192.0.2.1:80", 1, 0.1, 1, 1, "write", "t.f."))
