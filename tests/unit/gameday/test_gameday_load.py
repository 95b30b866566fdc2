"""The load generator: bounded, unique writes, each classified for reconciliation."""

from __future__ import annotations

import asyncio
import json

import httpx

from gameday.clock import Clock
from gameday.load import LoadGenerator, classify_exception
from gameday.scenario import RequestMix


def fake_app(request: httpx.Request) -> httpx.Response:
    if request.url.path == "/api/users/":
        body = json.loads(request.content)
        assert request.headers["X-Request-ID"] == body["username"]
        n = int(body["username"][-7:])
        if n % 4 == 1:
            return httpx.Response(201, json={"id": 1000 + n, **body})
        if n % 4 == 2:
            return httpx.Response(503, json={"error": "database unavailable"})
        if n % 4 == 3:
            raise httpx.ReadTimeout("timed out", request=request)
        raise httpx.ConnectError("refused", request=request)
    if request.url.path.startswith("/api/users/"):
        return httpx.Response(200, json={"id": 1})
    return httpx.Response(200, json={"status": "ok"})


def run_load(users=3, seconds=0.3, mix=None, max_requests=10_000):
    async def go():
        load = LoadGenerator("http://edge", "gd-t-01-", users, mix or RequestMix(), Clock(),
                             think_time_ms=1, timeout_s=1, max_requests=max_requests,
                             transport=httpx.MockTransport(fake_app))
        await load.start()
        await asyncio.sleep(seconds)
        await load.stop()
        return load
    return asyncio.run(go())


def test_every_write_is_unique_and_classified():
    load = run_load(mix=RequestMix(create_user=1, get_user=0, list_audit=0, health=0))
    names = [w.username for w in load.writes]
    assert len(names) == len(set(names)) > 8
    by_outcome = {}
    for w in load.writes:
        n = int(w.username[-7:])
        by_outcome.setdefault(n % 4, set()).add((w.outcome, w.status, w.error))
    assert by_outcome[1] == {("acknowledged", 201, None)}
    assert by_outcome[2] == {("failed", 503, "http_503")}
    assert by_outcome[3] == {("indeterminate", None, "timeout")}
    assert by_outcome[0] == {("failed", None, "connect_refused")}
    acked = [w for w in load.writes if w.outcome == "acknowledged"]
    assert all(w.user_id == 1000 + int(w.username[-7:]) for w in acked)
    assert len(load.samples) == len(load.writes)
    assert not load.inflight


def test_request_cap_bounds_the_load():
    load = run_load(users=5, seconds=0.5, max_requests=7)
    assert len(load.samples) <= 7 + 5  # each user may finish the request it started


def test_reads_use_acknowledged_ids_and_surge_scales_users():
    async def go():
        load = LoadGenerator("http://edge", "gd-t-02-", 2, RequestMix(), Clock(),
                             think_time_ms=1, timeout_s=1, max_users=10,
                             transport=httpx.MockTransport(fake_app))
        await load.start()
        await asyncio.sleep(0.1)
        await load.set_users(10)
        await asyncio.sleep(0.1)
        assert len([t for t, s in load._tasks if not t.done()]) == 10
        await load.set_users(2)
        await asyncio.sleep(0.1)
        await load.stop()
        return load

    load = asyncio.run(go())
    assert {s.users for s in load.samples} >= {2, 10}
    assert any(s.op == "get_user" for s in load.samples)


def test_exception_classification():
    request = httpx.Request("POST", "http://x/")
    assert classify_exception(httpx.ConnectError("x", request=request)) == (
        "failed", "connect_refused")
    assert classify_exception(httpx.ConnectTimeout("x", request=request))[0] == "failed"
    assert classify_exception(httpx.PoolTimeout("x", request=request))[0] == "failed"
    assert classify_exception(httpx.ReadTimeout("x", request=request)) == (
        "indeterminate", "timeout")
    assert classify_exception(httpx.RemoteProtocolError("x", request=request)) == (
        "indeterminate", "reset")
    assert classify_exception(httpx.ReadError("x", request=request))[0] == "indeterminate"
