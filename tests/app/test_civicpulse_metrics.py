"""/metrics under several Gunicorn workers (prometheus_client multiprocess mode)."""

from __future__ import annotations

import os
import signal
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from civicpulse_checks import metric_families, metric_value
from civicpulse_stack import wait_until
from prometheus_client.multiprocess import MultiProcessCollector

pytestmark = pytest.mark.slow

CONTRACT = {
    "civicpulse_http_requests": ("counter", {"view", "method", "status"}),
    "civicpulse_http_request_duration_seconds": ("histogram", {"view", "method"}),
    "civicpulse_db_errors": ("counter", {"kind"}),
    "civicpulse_cache_errors": ("counter", {"kind"}),
    "civicpulse_cache_circuit_open": ("gauge", set()),
    "civicpulse_audit_events_written": ("counter", set()),
    "civicpulse_audit_write_failures": ("counter", set()),
    "civicpulse_users_created": ("counter", set()),
}


def health_count(text: str) -> float:
    return metric_value(text, "civicpulse_http_requests_total",
                        view="health", method="GET", status="200")


def per_worker_health_counts(server) -> dict[int, float]:
    """Health request count in each worker's own value file."""
    counts = {}
    for pid in server.worker_pids():
        path = server.metrics_dir / f"counter_{pid}.db"
        if not path.exists():
            continue
        total = 0.0
        for metric in MultiProcessCollector.merge([str(path)], accumulate=True):
            for sample in metric.samples:
                if (sample.name == "civicpulse_http_requests_total"
                        and sample.labels.get("view") == "health"
                        and sample.labels.get("status") == "200"):
                    total += sample.value
        counts[pid] = total
    return counts


def test_contract_metric_names_and_types(http):
    http.get("/civicpulse/health/")
    families = metric_families(http.get("/metrics").text)
    for name, (kind, labels) in CONTRACT.items():
        assert name in families, f"{name} missing from /metrics"
        family = families[name]
        assert family.type == kind, name
        for sample in family.samples:
            assert labels <= set(sample.labels) | {"le"}, (name, sample)
    buckets = {s.labels["le"] for s in families["civicpulse_http_request_duration_seconds"].samples
               if s.name.endswith("_bucket")}
    assert {"0.005", "10.0", "+Inf"} <= buckets
    kinds = {s.labels["kind"] for s in families["civicpulse_db_errors"].samples}
    assert {"operational", "integrity", "timeout", "other"} <= kinds


def test_counts_sum_across_workers(http, server):
    assert len(server.worker_pids()) == 2
    before_text = http.get("/metrics").text
    before_total = health_count(before_text)
    before_workers = per_worker_health_counts(server)

    def hit(_: int) -> int:
        with httpx.Client(base_url=server.base_url, timeout=10) as client:
            return sum(client.get("/civicpulse/health/").status_code == 200 for _ in range(10))

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert sum(pool.map(hit, range(8))) == 80

    after_total = health_count(http.get("/metrics").text)
    assert after_total - before_total == 80
    after_workers = per_worker_health_counts(server)
    deltas = {pid: after_workers[pid] - before_workers.get(pid, 0) for pid in after_workers}
    assert sum(deltas.values()) == 80
    assert all(delta > 0 for delta in deltas.values()), f"one worker served all: {deltas}"


def test_view_labels(http, unique):
    created = http.post("/api/users/", json={"username": f"ml{unique}",
                                              "email": "ml@example.org"}).json()
    http.get(f"/api/users/{created['id']}/")
    http.get("/api/audit/")
    http.get("/not/routed")
    text = http.get("/metrics").text
    for view, method, status in [("users_create", "POST", "201"), ("user_detail", "GET", "200"),
                                 ("audit_list", "GET", "200"), ("unmatched", "GET", "404"),
                                 ("metrics", "GET", "200")]:
        assert metric_value(text, "civicpulse_http_requests_total",
                            view=view, method=method, status=status) >= 1, view
    assert metric_value(text, "civicpulse_http_request_duration_seconds_count",
                        view="users_create", method="POST") >= 1
    assert metric_value(text, "civicpulse_users_created_total") >= 1
    assert metric_value(text, "civicpulse_audit_events_written_total") >= 1


def test_killed_worker_keeps_counts_and_drops_live_gauge(http, server):
    before = health_count(http.get("/metrics").text)
    victim = server.worker_pids()[0]
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: len(server.worker_pids()) == 2 and victim not in server.worker_pids(),
               "Gunicorn to replace the killed worker", timeout=30)
    wait_until(lambda: not (server.metrics_dir / f"gauge_livemax_{victim}.db").exists(),
               "child_exit to drop the dead worker's live gauge", timeout=10)
    assert health_count(http.get("/metrics").text) >= before
