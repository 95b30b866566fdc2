"""The local target for real: deploy, health through nginx, idempotent re-deploy."""

from __future__ import annotations

import json
import socket
import time

import httpx
import pytest

from infra.targets.local_lifecycle import deploy, status

pytestmark = [pytest.mark.slow, pytest.mark.deploy]


def test_every_service_is_healthy(deployed_stack, deploy_record):
    report = status(deployed_stack)
    bad = [r for r in report["services"] if not (r["healthy"] and r["state"] == "RUNNING")]
    assert not bad
    assert report["endpoints"]["app"] == deployed_stack.app_url
    # status shows Prometheus' scrape health for every scraped endpoint
    scraped = [r for r in report["services"] if r["scrape"] != "-"]
    assert len(scraped) >= 9 and all(r["scrape"] in ("up", "down") for r in scraped)
    print("cold deploy:", deploy_record)


def test_health_through_nginx_and_each_app_host(deployed_stack):
    resp = httpx.get(deployed_stack.url("nginx", "/civicpulse/health/"), timeout=5)
    assert resp.status_code == 200
    assert resp.json()["status"] == "ok"
    for app in deployed_stack.instances("app"):
        direct = httpx.get(f"http://{app.endpoint}/civicpulse/health/", timeout=5)
        assert direct.status_code == 200, app.host
        assert direct.json()["checks"]["database"]["status"] == "ok"


def test_nginx_spreads_requests_over_both_app_hosts(deployed_stack):
    # Which upstream served a request is only visible in nginx's access log.
    seen = set()
    with httpx.Client(timeout=5) as client:
        for i in range(20):
            r = client.post(deployed_stack.url("nginx", "/api/users/"),
                            json={"username": f"spread{i}-{time.time_ns()}",
                                  "email": f"s{i}@example.org"})
            assert r.status_code == 201
    from infra.paths import host_dir
    edge = deployed_stack.one("nginx").host
    wanted = {a.host for a in deployed_stack.instances("app")}
    # nginx buffers its access log and flushes it every second (flush=1s).
    deadline = time.monotonic() + 5
    while seen != wanted and time.monotonic() < deadline:
        time.sleep(0.5)
        log = (host_dir(deployed_stack, edge) / "nginx" / "access.log").read_text()
        seen = {app.host for app in deployed_stack.instances("app") if app.endpoint in log}
    assert seen == wanted


def test_every_listener_is_bound_to_its_host_address(deployed_stack):
    for svc in deployed_stack.services:
        with socket.create_connection((svc.address, svc.port), timeout=2):
            pass
    import subprocess
    out = subprocess.run(["ss", "-Hltn"], capture_output=True, text=True).stdout
    ours = {str(p) for s in deployed_stack.services for p in (s.port, s.metrics_port)}
    for line in out.splitlines():
        local = line.split()[3]
        addr, port = local.rsplit(":", 1)
        if port in ours and addr.startswith(("0.0.0.0", "*", "[::]")):
            pytest.fail(f"wildcard listener on port {port}: {line}")


def test_the_ssh_host_was_configured_over_ssh(deployed_stack, ssh_host_name):
    assert deployed_stack.host(ssh_host_name).connection == "ssh"
    from infra.paths import work_dir
    log = (work_dir(deployed_stack) / "ansible.log").read_text()
    assert f"ok: [{ssh_host_name}]" in log or f"changed: [{ssh_host_name}]" in log


#: The deploy issue's bound was 30 s for the 7-host lab. Ansible runs through
#: Mitogen's strategies (see infra/ansible_run.py), one supervisorctl per host, pip
#: only on a changed requirement set, dpkg-query before apt: 19-21 s for 7 hosts. The
#: lab now has an 8th host (backups) and its warm re-deploy measured 25-27 s on a
#: quiet 2-core box, 20.5 s once in CI; CI's machine has run 19 % slower than this
#: one (30.9 s for 26 s). 35 s until the 8-host lab is back under 30 (open, #17).
WARM_DEPLOY_BUDGET_S = 35


def test_redeploy_changes_nothing_and_is_fast(deployed_stack):
    started = time.monotonic()
    result = deploy(deployed_stack)
    elapsed = time.monotonic() - started
    print(f"warm re-deploy: {elapsed:.1f}s, changed={result.playbook.changed}")
    assert result.playbook.changed == 0, result.playbook.recap
    assert result.healthy
    assert elapsed <= WARM_DEPLOY_BUDGET_S


def test_alertmanager_delivers_to_the_notification_log(deployed_stack):
    """Every notification lands somewhere between GameDays: the Watchdog heartbeat is
    in the lab pager's log and Alertmanager has not failed a single delivery."""
    from infra.paths import notification_log_path

    log = notification_log_path(deployed_stack)
    deadline = time.monotonic() + 30
    names: set[str] = set()
    while time.monotonic() < deadline and "Watchdog" not in names:
        if log.exists():
            names = {a["labels"].get("alertname") for line in log.read_text().splitlines()
                     for a in json.loads(line)["payload"]["alerts"]}
        time.sleep(0.5)
    assert "Watchdog" in names, f"no Watchdog notification in {log} after 30 s"
    metrics = httpx.get(deployed_stack.url("alertmanager", "/metrics"), timeout=5).text
    sent = failed = 0.0
    for line in metrics.splitlines():
        if line.startswith("alertmanager_notifications_total{"):
            sent += float(line.rsplit(" ", 1)[1])
        elif line.startswith("alertmanager_notifications_failed_total{"):
            failed += float(line.rsplit(" ", 1)[1])
    assert sent > 0 and failed == 0, (sent, failed)
