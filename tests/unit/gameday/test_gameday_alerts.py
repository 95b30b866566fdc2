"""Alert sources: state tracking, payload parsing, dead man's switch, webhook receiver."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from gameday.alerts import (
    DEADMAN_ALERT,
    FIRING,
    INACTIVE,
    PENDING,
    AlertSources,
    AlertTracker,
    DeadMansSwitch,
    PrometheusPoller,
    WebhookReceiver,
    parse_prometheus_alerts,
    parse_webhook,
)
from gameday.clock import FakeClock


def prom_payload(*alerts):
    return {"status": "success", "data": {"alerts": [
        {"labels": {"alertname": name, **labels}, "state": state}
        for name, state, labels in alerts]}}


def test_tracker_reports_each_aggregate_change_once():
    seen = []
    tracker = AlertTracker(FakeClock(), lambda *args: seen.append(args))
    tracker.replace_source("prometheus", parse_prometheus_alerts(
        prom_payload(("AppHostDown", PENDING, {"host": "app1"}))), t=1.0)
    tracker.replace_source("prometheus", parse_prometheus_alerts(prom_payload(
        ("AppHostDown", FIRING, {"host": "app1"}),
        ("AppHostDown", PENDING, {"host": "app2"}))), t=2.0)
    tracker.replace_source("prometheus", parse_prometheus_alerts(prom_payload(
        ("AppHostDown", FIRING, {"host": "app2"}))), t=3.0)  # still firing: no event
    tracker.replace_source("prometheus", {}, t=4.0)
    assert seen == [(1.0, "AppHostDown", "prometheus", INACTIVE, PENDING),
                    (2.0, "AppHostDown", "prometheus", PENDING, FIRING),
                    (4.0, "AppHostDown", "prometheus", FIRING, INACTIVE)]


def test_webhook_payload_firing_then_resolved():
    tracker = AlertTracker(FakeClock())
    firing = {"status": "firing", "alerts": [
        {"status": "firing", "labels": {"alertname": "RedisDown", "host": "cache"}}]}
    resolved = {"status": "resolved", "alerts": [
        {"status": "resolved", "labels": {"alertname": "RedisDown", "host": "cache"}}]}
    for name, fp, state in parse_webhook(firing):
        tracker.set_instance("webhook", name, fp, state, 5.0)
    assert tracker.state("RedisDown") == FIRING
    assert tracker.firing_alerts() == ["RedisDown"]
    for name, fp, state in parse_webhook(resolved):
        tracker.set_instance("webhook", name, fp, state, 9.0)
    assert tracker.state("RedisDown") == INACTIVE
    assert [h[4] for h in tracker.history] == [FIRING, INACTIVE]


def test_dead_mans_switch_fires_when_the_heartbeat_stops():
    tracker = AlertTracker(FakeClock())
    switch = DeadMansSwitch(timeout_s=10, tracker=tracker)
    switch.check(100.0)
    assert tracker.state(DEADMAN_ALERT) == INACTIVE  # never armed: no Watchdog seen yet
    switch.heartbeat(1.0)
    switch.check(8.0)
    assert tracker.state(DEADMAN_ALERT) == INACTIVE
    switch.check(12.0)
    assert tracker.state(DEADMAN_ALERT) == FIRING
    assert tracker.history[-1][0] == 11.0  # fired at last heartbeat + timeout
    switch.heartbeat(20.0)
    assert tracker.state(DEADMAN_ALERT) == INACTIVE


def test_poller_heartbeats_on_watchdog_and_counts_errors():
    clock = FakeClock()
    tracker = AlertTracker(clock)
    switch = DeadMansSwitch(10, tracker)
    state = {"up": True}

    def handler(request):
        if not state["up"]:
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(200, json=prom_payload(("Watchdog", FIRING, {})))

    poller = PrometheusPoller("http://prom", tracker, clock, switch)

    async def scenario():
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            await poller.poll_once(client)
            state["up"] = False
            clock.advance(15)
            await poller.poll_once(client)

    asyncio.run(scenario())
    assert switch.heartbeats == 1 and poller.errors == 1
    assert tracker.state(DEADMAN_ALERT) == FIRING


def test_webhook_receiver_accepts_only_post_alerts():
    payloads = []

    async def scenario():
        receiver = WebhookReceiver("127.0.13.9", 0, payloads.append)
        await receiver.start()
        port = receiver._server.sockets[0].getsockname()[1]
        async with httpx.AsyncClient(base_url=f"http://127.0.13.9:{port}") as client:
            ok = await client.post("/alerts", json={"alerts": []})
            wrong = await client.get("/alerts")
            bad = await client.post("/alerts", content=b"{not json")
        await receiver.stop()
        return ok.status_code, wrong.status_code, bad.status_code

    assert asyncio.run(scenario()) == (200, 404, 400)
    assert payloads == [{"alerts": []}]


def test_webhook_receiver_refuses_non_loopback():
    with pytest.raises(ValueError, match="loopback"):
        asyncio.run(WebhookReceiver("10.0.0.1", 9099, print).start())


def test_alert_sources_turn_webhooks_into_transitions():
    seen = []

    async def scenario():
        sources = AlertSources(("127.0.13.9", 0), "http://127.0.13.9:1", FakeClock(),
                               lambda *a: seen.append(a), poll_interval_s=0.05)
        await sources.start()
        port = sources.receiver._server.sockets[0].getsockname()[1]
        body = json.dumps({"alerts": [{"status": "firing", "labels": {
            "alertname": "Watchdog"}}, {"status": "firing", "labels": {
                "alertname": "RedisDown"}}]})
        async with httpx.AsyncClient() as client:
            await client.post(f"http://127.0.13.9:{port}/alerts", content=body)
        await asyncio.sleep(0.1)
        await sources.stop()
        return sources

    sources = asyncio.run(scenario())
    assert ("RedisDown", "webhook", INACTIVE, FIRING) in [a[1:] for a in seen]
    assert sources.deadman.heartbeats == 1
    assert sources.poller.errors >= 1  # nothing listens on the fake Prometheus


def test_labels_of_prefers_a_firing_instance():
    tracker = AlertTracker(FakeClock())
    tracker.replace_source("prometheus", parse_prometheus_alerts(prom_payload(
        ("AppHostDown", PENDING, {"host": "app2"}),
        ("AppHostDown", FIRING, {"host": "app1", "service": "app"}))), t=1.0)
    assert tracker.labels_of("AppHostDown") == {"alertname": "AppHostDown", "host": "app1",
                                                "service": "app"}
    assert tracker.labels_of("Nope") == {}
