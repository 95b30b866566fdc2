"""The lab pager (monitoring/alertmanager/notification_log.py) and the engine's tail
of its log: what Alertmanager posts lands in the file once, and the engine sees each
notification exactly once, dated by its arrival."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from pathlib import Path

import httpx
import pytest

from gameday.alerts import FIRING, INACTIVE, AlertSources, NotificationLogTail
from gameday.clock import Clock
from monitoring.alertmanager.notification_log import NotificationLog, main, serve

ADDRESS = "127.0.13.21"
FIRING_REDIS = {"status": "firing", "alerts": [
    {"status": "firing", "labels": {"alertname": "RedisDown", "host": "cache"}}]}


@pytest.fixture
def receiver(tmp_path):
    log = tmp_path / "notifications.jsonl"
    server = serve(ADDRESS, 0, NotificationLog(log, max_bytes=10_000))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://{ADDRESS}:{server.server_address[1]}", log
    server.shutdown()
    server.server_close()


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_receiver_logs_posted_notifications_and_rejects_the_rest(receiver):
    url, log = receiver
    before = time.time()
    with httpx.Client(base_url=url) as client:
        assert client.post("/alerts", json=FIRING_REDIS).status_code == 200
        assert client.get("/-/healthy").status_code == 200
        assert client.get("/alerts").status_code == 404
        assert client.post("/other", json=FIRING_REDIS).status_code == 404
        assert client.post("/alerts", content=b"{not json").status_code == 400
        assert client.post("/alerts", json={"no": "alerts"}).status_code == 400
        assert client.post("/alerts", content=b"x" * 1_000_001).status_code == 413
    entries = _lines(log)
    assert [e["payload"] for e in entries] == [FIRING_REDIS]
    assert before <= entries[0]["received_at"] <= time.time()


def test_receiver_rotates_its_log_instead_of_growing_without_bound(receiver):
    url, log = receiver
    rotated = log.with_name(log.name + ".1")
    posts = 0
    with httpx.Client(base_url=url) as client:
        while not rotated.exists() and posts < 500:  # ~120 bytes each, max_bytes 10 000
            assert client.post("/alerts", json=FIRING_REDIS).status_code == 200
            posts += 1
        for _ in range(5):
            assert client.post("/alerts", json=FIRING_REDIS).status_code == 200
    assert rotated.exists(), "never rotated"
    assert log.stat().st_size <= 10_000 and rotated.stat().st_size <= 10_000
    assert len(_lines(log)) + len(_lines(rotated)) == posts + 5


def test_receiver_refuses_a_non_loopback_address(tmp_path, capsys):
    with pytest.raises(ValueError, match="loopback"):
        serve("10.0.0.1", 9099, NotificationLog(tmp_path / "n.jsonl", 1000))
    assert main(["--listen", "192.0.2.1:9099", "--log", str(tmp_path / "n.jsonl")]) == 2
    assert "cannot listen on 192.0.2.1:9099" in capsys.readouterr().err


def _append(path: Path, payload: dict, received_at: float = 1.0, end: str = "\n") -> None:
    with path.open("a") as f:
        f.write(json.dumps({"received_at": received_at, "payload": payload}) + end)


def test_tail_starts_at_the_end_and_waits_for_whole_lines(tmp_path):
    log = tmp_path / "notifications.jsonl"
    _append(log, {"alerts": [], "n": 0})  # before the run: not ours
    seen = []
    tail = NotificationLogTail(log, lambda p, at: seen.append((p["n"], at)))
    tail.start()
    _append(log, {"alerts": [], "n": 1}, 5.0)
    with log.open("a") as f:
        f.write('{"received_at": 6.0, "payload": {"alerts": [], "n": 2}')  # half written
    assert tail.read_new() == 1 and seen == [(1, 5.0)]
    with log.open("a") as f:
        f.write("}\n")
    with log.open("a") as f:
        f.write("garbage\n")
    assert tail.read_new() == 1 and seen == [(1, 5.0), (2, 6.0)]
    assert tail.malformed == 1


def test_tail_follows_rotation_without_losing_or_repeating_a_line(tmp_path):
    log = tmp_path / "notifications.jsonl"
    seen = []
    tail = NotificationLogTail(log, lambda p, at: seen.append(p["n"]))
    tail.start()  # no log yet
    _append(log, {"alerts": [], "n": 1})
    assert tail.read_new() == 1
    _append(log, {"alerts": [], "n": 2})  # written just before the receiver rotates
    os.replace(log, log.with_name(log.name + ".1"))
    _append(log, {"alerts": [], "n": 3})
    assert tail.read_new() == 2
    assert seen == [1, 2, 3]


def test_the_receiver_creates_its_log_when_it_starts(receiver):
    """A fresh deploy has no notification yet: an empty log, never a missing one."""
    _url, log = receiver
    assert log.exists() and log.read_text() == ""


def test_alert_sources_read_pages_from_the_real_receiver(receiver):
    url, log = receiver
    seen = []
    port = int(url.rsplit(":", 1)[1])

    async def scenario():
        clock = Clock()
        sources = AlertSources((ADDRESS, port), "http://127.0.13.21:1", clock,
                               lambda *a: seen.append(a), poll_interval_s=0.05,
                               notification_log=log)
        await sources.start()
        async with httpx.AsyncClient() as client:
            await asyncio.sleep(0.3)
            posted = clock.now()
            await client.post(f"{url}/alerts", json=FIRING_REDIS)
        await asyncio.sleep(0.5)
        await sources.stop()
        return sources, posted

    sources, posted = asyncio.run(scenario())
    assert sources.receiver is None and sources.webhook_error is None
    fired = [a for a in seen if a[1:] == ("RedisDown", "webhook", INACTIVE, FIRING)]
    assert len(fired) == 1
    # Dated by the receiver's arrival time, not by the tail's next read (0.2 s later).
    assert posted <= fired[0][0] < posted + 0.15, (posted, fired)


def test_alert_sources_say_when_the_receiver_is_not_up(tmp_path):
    async def scenario():
        # Port 9 (discard) on a loopback address nothing listens on: refused.
        sources = AlertSources((ADDRESS, 9), "http://127.0.13.21:1", Clock(),
                               lambda *a: None, notification_log=tmp_path / "absent.jsonl")
        await sources.start()
        await sources.stop()
        return sources

    error = asyncio.run(scenario()).webhook_error
    assert f"webhook receiver (notification log) at http://{ADDRESS}:9/-/healthy is not up" \
        in error
