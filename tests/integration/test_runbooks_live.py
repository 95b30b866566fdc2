"""Runbooks against real faults on a deployed throwaway stack (`deployed_stack`).

Each test breaks one thing the way an incident would, waits until Prometheus fires the
alert (what pages the on-call engineer), runs that alert's runbook through the GameDay
runner exactly as a GameDay does, and asserts that the stack recovered: the runbook's
own verdict, and the app healthy through nginx. Whatever happens, the stack is left
healthy for the next test.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator

import psycopg
import pytest

from gameday.runbook_runner import RunbookResult, run_runbook
from infra.health import probe
from infra.ops import cache, disk, drain, pgbouncer, postgresql, prometheus, services
from infra.ops.outcome import OpsError
from infra.paths import secrets_dir
from infra.runbook_env import runbook_env
from infra.secrets import read_secret
from infra.supervision import supervisorctl
from infra.topology import REPO_ROOT, Topology

pytestmark = [pytest.mark.slow, pytest.mark.deploy]

RUNBOOKS = REPO_ROOT / "runbooks"
ALERT_DEADLINE_S = 45


def _runner_env(topology: Topology, alert: str, **labels: str) -> dict[str, str]:
    """The environment a GameDay gives the runbook: the runner's own, with the labels
    the alert carries (host, service)."""
    return runbook_env(topology, alert, labels)


def _wait_for(check: Callable[[], bool], timeout_s: float, what: str) -> float:
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"{what} not within {timeout_s:g}s")
        time.sleep(1)
    return time.monotonic() - started


def _firing(topology: Topology, alert: str) -> bool:
    try:
        return prometheus.alerts(topology, name=alert, expect_firing=True).ok
    except OpsError:
        return False


def _await_alert(topology: Topology, alert: str) -> str | None:
    """Wait for the alert like the on-call engineer would; say what fired if it did not.

    The runbook runs either way (its recovery is what these tests are about); the
    missing alert fails the test at its end."""
    deadline = time.monotonic() + ALERT_DEADLINE_S
    while time.monotonic() < deadline:
        if _firing(topology, alert):
            return None
        time.sleep(1)
    others = prometheus.alerts(topology).records()
    return (f"{alert} did not fire within {ALERT_DEADLINE_S}s; firing instead: "
            f"{[(r['alert'], r['labels']) for r in others]}")


def _run(topology: Topology, alert: str, **labels: str) -> RunbookResult:
    result = run_runbook(RUNBOOKS / f"{alert}.md", ["diagnose", "mitigate", "verify"],
                         _runner_env(topology, alert, **labels), timeout_s=90)
    failed = [(r.step, r.line, r.exit_code, r.timed_out, r.stdout[-1500:], r.stderr[-1500:])
              for r in result.results if not r.ok]
    assert result.ok, (result.problem, failed)
    assert {r.step for r in result.results} == {"diagnose", "mitigate", "verify"}
    return result


def _healthy_through_nginx(topology: Topology) -> bool:
    return probe(topology, topology.one("nginx")).ok


@pytest.fixture
def stack(deployed_stack: Topology) -> Iterator[Topology]:
    """The deployed stack, healthy before the test and brought back after it."""
    assert _healthy_through_nginx(deployed_stack)
    yield deployed_stack
    for service in ("postgresql", "pgbouncer", "redis", "app", "nginx"):
        services.restart(deployed_stack, service, unhealthy_only=True, wait_s=60)
    _wait_for(lambda: _healthy_through_nginx(deployed_stack), 60, "health through nginx")


@pytest.mark.parametrize(("alert", "host", "program"), [
    ("PostgresqlDown", "db", "postgresql"),
    ("RedisDown", "cache", "redis"),
])
def test_service_stopped_runbook_recovers(stack, alert, host, program):
    stopped = supervisorctl(stack, host, "stop", program)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    missing_alert = _await_alert(stack, alert)
    _run(stack, alert, host=host, service=program)
    assert probe(stack, stack.one(program)).ok
    assert _healthy_through_nginx(stack)
    assert not _firing(stack, alert)
    assert missing_alert is None, missing_alert


def test_app_host_down_runbook_boots_the_host(stack):
    # The whole "machine" app1 goes down: its supervisord and every program on it.
    down = supervisorctl(stack, "app1", "shutdown")
    assert down.returncode == 0, down.stdout + down.stderr
    missing_alert = _await_alert(stack, "AppHostDown")
    assert _healthy_through_nginx(stack)  # app2 carries the traffic meanwhile
    result = _run(stack, "AppHostDown", host="app1", service="app")
    mitigate = next(r for r in result.results if r.step == "mitigate")
    assert "host app1 was down: started its supervisord" in mitigate.stdout
    assert all(probe(stack, s).ok for s in stack.instances("app"))
    assert missing_alert is None, missing_alert


def test_frozen_postgresql_is_continued_not_restarted(stack):
    main = int(supervisorctl(stack, "db", "pid", "postgresql").stdout.strip())
    tree = [int(p) for p in subprocess.run(["pgrep", "-P", str(main)], capture_output=True,
                                           text=True).stdout.split()]
    os.kill(main, 19)  # SIGSTOP the postmaster first, so it forks nothing meanwhile
    for pid in tree:
        os.kill(pid, 19)
    try:
        missing_alert = _await_alert(stack, "PostgresqlDown")
        result = _run(stack, "PostgresqlDown", host="db", service="postgresql")
    finally:
        for pid in [main, *tree]:
            try:
                os.kill(pid, 18)  # SIGCONT, whatever happened
            except ProcessLookupError:
                pass
    restore, restart = [r for r in result.results if r.step == "mitigate"][:2]
    # A frozen server still has its cluster: the runbook's restore step must not act.
    assert "holds a cluster: nothing to restore" in restore.stdout
    assert "stopped process(es); healthy, not restarted" in restart.stdout
    assert int(supervisorctl(stack, "db", "pid", "postgresql").stdout.strip()) == main
    assert missing_alert is None, missing_alert


def test_pool_holders_are_found_and_terminated(stack):
    password = read_secret(secrets_dir(stack), "app_db")
    pool = stack.one("pgbouncer")
    holder = psycopg.connect(host=pool.address, port=pool.port, user="civicpulse",
                             dbname=stack.sizing.postgresql.database, password=password,
                             prepare_threshold=None, application_name="runbook-test-holder")
    try:
        holder.execute("SELECT 1")  # opens a transaction and keeps it: idle in transaction
        time.sleep(3)
        shown = postgresql.kill_transactions(stack, older_than_s=2, dry_run=True)
        assert [r["application"] for r in shown.records()] == ["runbook-test-holder"]
        pools = pgbouncer.show(stack)
        assert pools.ok and any(r["database"] == stack.sizing.postgresql.database
                                and r["sv_active"] >= 1 for r in pools.records())
        done = postgresql.kill_transactions(stack, older_than_s=2)
        assert [r["result"] for r in done.records()] == ["terminated"]
        with pytest.raises(psycopg.OperationalError):
            holder.execute("SELECT 1")
    finally:
        holder.close()


def test_drain_and_undrain_through_nginx(stack):
    try:
        drained = drain.drain(stack, "app1")
        assert drained.ok, drained.notes
        assert drain.nginx_upstream(stack) == {"app1": True, "app2": False}
        # With app1 drained, stopping it costs users nothing.
        supervisorctl(stack, "app1", "stop", "app")
        for _ in range(20):
            assert _healthy_through_nginx(stack)
        with pytest.raises(OpsError, match="would leave no healthy app host"):
            drain.drain(stack, "app2")
        supervisorctl(stack, "app1", "start", "app")
        app1 = next(s for s in stack.instances("app") if s.host == "app1")
        _wait_for(lambda: probe(stack, app1).ok, 30, "app1 healthy")
    finally:
        undrained = drain.undrain(stack, "app1", force=True)
    assert undrained.ok and drain.nginx_upstream(stack) == {"app1": False, "app2": False}


def test_cache_key_deleted_and_disk_reported(stack):
    conn = cache.client(stack)
    try:
        conn.set("user:987654321", b"poisoned", ex=60)
        dry = cache.delete_keys(stack, [], pattern="user:98765432*", dry_run=True)
        assert dry.records() == [{"key": "user:987654321", "result": "exists"}]
        gone = cache.delete_keys(stack, ["user:987654321"])
        assert gone.records() == [{"key": "user:987654321", "result": "deleted"}]
        assert conn.get("user:987654321") is None
    finally:
        conn.close()
    report = disk.disk(stack, min_free_pct=1)
    assert report.ok and any(r["what"] == "filesystem" for r in report.records())


def test_cli_in_a_runbook_shell_reaches_the_stack(stack):
    """The placeholder contract: CP_STACK names a throwaway stack the CLI can find."""
    env = _runner_env(stack, "RedisDown")
    out = subprocess.run(["/bin/bash", "-euo", "pipefail", "-c",
                          'python -m infra.ops status --stack "$CP_STACK" --service redis '
                          '--json'], env=env, cwd=REPO_ROOT, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert '"health": "ok"' in out.stdout
