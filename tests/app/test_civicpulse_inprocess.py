"""In-process checks with Django's test client (same JSON config, real PgBouncer/Redis)."""

from __future__ import annotations

import pytest
from civicpulse_checks import metric_value

pytestmark = pytest.mark.slow


def test_unhandled_error_is_json_500_and_counted(client, monkeypatch):
    from civicpulse.core import user_store

    def explode(user_id: int) -> bytes:
        raise RuntimeError("boom")

    monkeypatch.setattr(user_store, "user_document", explode)
    client.raise_request_exception = False
    response = client.get("/api/users/1/")
    assert response.status_code == 500
    assert response.json() == {"error": "internal server error"}
    assert response.headers["X-Request-ID"]
    text = client.get("/metrics").content.decode()
    assert metric_value(text, "civicpulse_http_requests_total",
                        view="user_detail", method="GET", status="500") >= 1


def test_metrics_without_multiproc_dir_use_process_registry(client):
    client.get("/civicpulse/health/")
    text = client.get("/metrics").content.decode()
    # The default registry also carries the process collector, which multiprocess
    # mode cannot provide: proof that the fallback path was taken.
    assert "process_cpu_seconds_total" in text
    assert metric_value(text, "civicpulse_http_requests_total", view="health") >= 1


def test_health_in_process(client):
    response = client.get("/civicpulse/health/")
    assert response.status_code == 200
    assert response.json()["checks"]["database"]["status"] == "ok"
