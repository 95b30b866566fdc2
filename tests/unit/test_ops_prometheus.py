"""`alerts` and `promql` against a fake Prometheus API."""

from __future__ import annotations

import httpx
import pytest

from infra.ops import prometheus
from infra.ops.outcome import OpsError
from infra.topology import load_stack

LAB = load_stack("lab")
ALERTS = {"status": "success", "data": {"alerts": [
    {"labels": {"alertname": "Watchdog", "severity": "none"}, "state": "firing",
     "activeAt": "2026-01-01T00:00:00.000Z", "annotations": {"summary": "heartbeat"}},
    {"labels": {"alertname": "RedisDown", "host": "cache", "severity": "critical"},
     "state": "firing", "activeAt": "2026-01-01T00:01:00Z",
     "annotations": {"summary": "Redis on cache is down"}},
    {"labels": {"alertname": "AppHostDown", "host": "app1"}, "state": "pending",
     "activeAt": "2026-01-01T00:02:00Z", "annotations": {}},
]}}


class FakeResponse:
    def __init__(self, body, status=200):
        self.body, self.status_code, self.text = body, status, str(body)

    def json(self):
        return self.body


@pytest.fixture
def api(monkeypatch):
    calls = []
    bodies = {"/api/v1/alerts": ALERTS}

    def get(url, params=None, timeout=None):
        calls.append((url, params))
        path = url.split(":9090", 1)[1]
        return FakeResponse(bodies[path])

    monkeypatch.setattr(prometheus.httpx, "get", get)
    return bodies, calls


def test_alerts_filters_by_state_and_name(api):
    _, calls = api
    outcome = prometheus.alerts(LAB)
    assert calls[0][0] == "http://127.0.10.50:9090/api/v1/alerts"
    assert [r["alert"] for r in outcome.records()] == ["RedisDown", "Watchdog"]
    assert outcome.records()[0]["labels"] == "host=cache, severity=critical"
    assert [r["alert"] for r in prometheus.alerts(LAB, state="any").records()] == \
        ["AppHostDown", "RedisDown", "Watchdog"]
    none = prometheus.alerts(LAB, name="PostgresqlDown")
    assert none.ok and none.notes == ["no firing alert named PostgresqlDown"]


def test_alert_verdicts_for_verify_steps(api):
    assert not prometheus.alerts(LAB, name="RedisDown", fail_if_firing=True).ok
    assert prometheus.alerts(LAB, name="PostgresqlDown", fail_if_firing=True).ok
    # The Watchdog always fires: it never fails a "nothing is firing" check.
    assert prometheus.alerts(LAB, name="Watchdog", fail_if_firing=True).ok
    assert prometheus.alerts(LAB, name="Watchdog", expect_firing=True).ok
    assert not prometheus.alerts(LAB, name="AppHostDown", expect_firing=True).ok
    with pytest.raises(OpsError, match="--state must be firing, pending or any"):
        prometheus.alerts(LAB, state="resolved")


def test_promql_vector_scalar_and_expect_empty(api):
    bodies, calls = api
    bodies["/api/v1/query"] = {"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": {"__name__": "up", "job": "app", "host": "app1"}, "value": [1, "0"]}]}}
    outcome = prometheus.query(LAB, "up == 0")
    assert calls[-1][1] == {"query": "up == 0"}
    assert outcome.records() == [{"labels": "host=app1, job=app", "value": "0"}]
    assert not prometheus.query(LAB, "up == 0", expect_empty=True).ok
    bodies["/api/v1/query"] = {"status": "success", "data": {"resultType": "vector",
                                                             "result": []}}
    assert prometheus.query(LAB, "up == 0", expect_empty=True).ok
    bodies["/api/v1/query"] = {"status": "success", "data": {"resultType": "scalar",
                                                             "result": [1, "42"]}}
    assert prometheus.query(LAB, "42").records() == [{"labels": "{}", "value": "42"}]


def test_errors_say_what_to_check(api, monkeypatch):
    bodies, _ = api
    bodies["/api/v1/query"] = {"status": "error", "errorType": "bad_data",
                               "error": "parse error"}
    with pytest.raises(OpsError, match="Prometheus rejected the request: bad_data parse error"):
        prometheus.query(LAB, "up ==")

    def refuse(*_a, **_kw):
        raise httpx.ConnectError("refused")

    monkeypatch.setattr(prometheus.httpx, "get", refuse)
    with pytest.raises(OpsError, match=r"does not answer .*status --stack lab --service "
                                       "prometheus"):
        prometheus.alerts(LAB)
