"""Service status, restart selection, logs and the /proc reader, without a stack."""

from __future__ import annotations

import dataclasses

import pytest

from infra import procfs
from infra.health import Health
from infra.ops import services
from infra.ops.outcome import OpsError
from infra.targets import local
from infra.targets.base import ServiceState
from infra.topology import load_stack


@pytest.fixture
def topology(tmp_path):
    return dataclasses.replace(load_stack("lab"), state_dir=tmp_path / "state")


@pytest.fixture
def alive_only():
    """Instances that answer but are not ready (their probe fails, liveness holds)."""
    return set()


class FakeOpsTarget:
    """The ops part of a Target: health per (host, service), mutable by the test;
    every restart is recorded and heals the instance."""

    def __init__(self, alive_only: set) -> None:
        self.healthy: dict = {}
        self.alive_only = alive_only
        self.actions: list[str] = []

    def health(self, svc):
        return Health(self.healthy.get((svc.host, svc.name), True), "probe")

    def alive(self, svc):
        return Health((svc.host, svc.name) in self.alive_only, "liveness")

    def state(self, svc):
        return ServiceState(svc.host, svc.name, "RUNNING", pid=100)

    def state_word(self, svc):
        return "RUNNING"

    def address(self, svc):
        return svc.endpoint

    def restart(self, svc):
        self.actions.append(f"{svc.name}@{svc.host}")
        self.healthy[(svc.host, svc.name)] = True
        return "restarted"


@pytest.fixture
def fake_stack(monkeypatch, alive_only):
    """Health per (host, service), mutable by the test; every action is recorded."""
    target = FakeOpsTarget(alive_only)
    monkeypatch.setattr(services, "target_for", lambda _t: target)
    return target.healthy, target.actions


def test_restart_unhealthy_touches_only_failing_instances(topology, fake_stack):
    health, actions = fake_stack
    health[("app2", "app")] = False
    outcome = services.restart(topology, "app", unhealthy_only=True, wait_s=0)
    assert outcome.ok and actions == ["app@app2"]
    assert [r["action"].split(":")[0] for r in outcome.records()] == ["answers", "restarted"]


def test_restart_unhealthy_leaves_alive_but_not_ready_hosts_alone(topology, fake_stack,
                                                                alive_only):
    # Both app hosts answer 503 because the database is slow: restarting them would
    # turn a degraded tier into an outage.
    health, actions = fake_stack
    health[("app1", "app")] = health[("app2", "app")] = False
    alive_only.update({("app1", "app"), ("app2", "app")})
    outcome = services.restart(topology, "app", unhealthy_only=True, wait_s=0)
    assert actions == []
    assert all(r["before"].startswith("alive, not ready") for r in outcome.records())


def test_restart_of_one_host_and_a_failure_that_persists(topology, fake_stack, monkeypatch):
    health, actions = fake_stack
    outcome = services.restart(topology, "app", host="app1", wait_s=0)
    assert outcome.ok and actions == ["app@app1"]
    monkeypatch.setattr(services, "bring_back", lambda _t, _s: "restarted")
    health[("db", "postgresql")] = False
    outcome = services.restart(topology, "postgresql", wait_s=0)
    assert not outcome.ok
    assert "postgresql@db is still unhealthy 0s after the restart" in outcome.notes[0]
    assert "logs --stack lab --service postgresql --host db" in outcome.notes[0]


def test_status_waits_for_health_and_fails_with_names(topology, fake_stack):
    health, _ = fake_stack
    health[("cache", "redis")] = False
    outcome = services.status(topology, service="redis", wait_s=0)
    assert not outcome.ok and outcome.notes == ["unhealthy: redis@cache"]
    health[("cache", "redis")] = True
    outcome = services.status(topology, host="cache")
    assert outcome.ok and [r["service"] for r in outcome.records()] == ["redis",
                                                                         "redis_exporter"]


def test_tail_lines_reads_the_end_of_big_files(tmp_path):
    log = tmp_path / "big.log"
    log.write_text("".join(f"line {i}\n" for i in range(100000)))
    assert local.tail_lines(log, 3) == ["line 99997", "line 99998", "line 99999"]
    assert local.tail_lines(log, 0) == []
    short = tmp_path / "short.log"
    short.write_text("a\nb")
    assert local.tail_lines(short, 10) == ["a", "b"]


def test_logs_filter_and_label_each_host(topology):
    for host in ("app1", "app2"):
        path = local.log_path(topology, topology.host(host).services[0])
        path.parent.mkdir(parents=True)
        path.write_text("".join(f'{{"status": {500 if i % 10 == 0 else 200}, "i": {i}}}\n'
                                for i in range(50)))
    outcome = services.logs(topology, "app", lines=2, grep='"status": 5..')
    assert outcome.ok
    assert outcome.notes[0].startswith("== app@app1:") and "last 2 matching lines" in \
        outcome.notes[0]
    assert outcome.notes[1:3] == ['{"status": 500, "i": 30}', '{"status": 500, "i": 40}']
    assert outcome.notes[3].startswith("== app@app2:")


def write_proc(root, pid, ppid, state, cmd):
    d = root / str(pid)
    d.mkdir(parents=True)
    (d / "stat").write_text(f"{pid} ({cmd.split()[0][-15:]}) {state} {ppid} 1 1 0 -1\n")
    (d / "cmdline").write_bytes(cmd.replace(" ", "\0").encode() + b"\0")


def test_process_tree_from_proc(tmp_path):
    write_proc(tmp_path, 100, 1, "S", "/usr/lib/postgresql/15/bin/postgres -D /data")
    write_proc(tmp_path, 101, 100, "T", "postgres: checkpointer")
    write_proc(tmp_path, 102, 100, "T", "postgres: walwriter")
    write_proc(tmp_path, 103, 101, "R", "postgres: child of child")
    write_proc(tmp_path, 200, 1, "S", "unrelated")
    (tmp_path / "self").mkdir()
    tree = procfs.tree(100, tmp_path)
    assert [p.pid for p in tree] == [100, 101, 102, 103]
    assert tree[0].command == "/usr/lib/postgresql/15/bin/postgres -D /data"
    assert [p.pid for p in tree if p.stopped] == [101, 102]
    assert procfs.tree(999, tmp_path) == []


def test_resume_continues_only_stopped_processes(monkeypatch):
    sent = []
    monkeypatch.setattr(procfs.os, "kill", lambda pid, sig: sent.append((pid, sig)))
    infos = [procfs.ProcInfo(1, 0, "S", "a"), procfs.ProcInfo(2, 1, "T", "b")]
    assert procfs.resume(infos) == [2]
    assert sent == [(2, procfs.signal.SIGCONT)]


def test_app_probe_needs_the_health_view_and_the_masters_metrics(topology, monkeypatch):
    """An app host is healthy when its workers answer the health view and its Gunicorn
    master answers /metrics on the metrics port (what Prometheus scrapes)."""
    import httpx

    from infra import health

    answers: dict[str, object] = {}
    asked: list[str] = []

    def get(url, timeout):
        asked.append(url)
        answer = answers.get(url, 200)
        if isinstance(answer, Exception):
            raise answer
        return httpx.Response(answer)

    monkeypatch.setattr(health.httpx, "get", get)
    app1 = next(s for s in topology.instances("app") if s.host == "app1")
    metrics_url = f"http://{app1.address}:{app1.metrics_port}/metrics"
    health_url = f"http://{app1.endpoint}{topology.workload.health_path}"
    assert app1.metrics_port != app1.port

    result = health.probe(topology, app1)
    assert result.ok and asked == [health_url, metrics_url]

    answers[metrics_url] = httpx.ConnectError("refused")
    result = health.probe(topology, app1)
    assert not result.ok and f"metrics on {app1.address}:{app1.metrics_port}" in result.detail

    asked.clear()
    answers[health_url] = 503
    assert not health.probe(topology, app1).ok and asked == [health_url]

    # Exporters are probed on their metrics endpoint, which is their port.
    node = topology.instances("node_exporter")[0]
    asked.clear()
    assert health.probe(topology, node).ok and asked == [f"http://{node.endpoint}/metrics"]


def test_database_commands_share_the_secret_error_and_the_one_line_error(topology):
    # PostgreSQL's session commands and PgBouncer's console both log in through
    # role_conninfo: a secret that cannot be read is the same ops error for both.
    from infra.connections import PGBOUNCER_STATS, SUPERUSER, first_line
    from infra.ops.outcome import OpsError
    from infra.ops.postgresql import role_conninfo

    for role, kind in ((SUPERUSER, "postgresql"), (PGBOUNCER_STATS, "pgbouncer")):
        with pytest.raises(OpsError, match=f"cannot read the {role.secret} secret of stack "
                                           f"{topology.stack}"):
            role_conninfo(topology, topology.one(kind), role)
    assert first_line(RuntimeError("refused\nDETAIL: more\nHINT: x")) == "refused"
    assert first_line(RuntimeError("  ")) == "RuntimeError('  ')"


def test_a_frozen_service_is_continued_through_its_target_not_restarted(topology):
    continued = []

    class FrozenTarget:
        def state(self, svc):
            return ServiceState(svc.host, svc.name, "RUNNING", pid=100, paused_pids=(100, 101))

        def resume(self, svc, pids=()):
            continued.append((svc.name, tuple(pids)))
            return list(pids)

        def health(self, svc):
            return Health(True, "probe")

        def restart(self, svc):
            pytest.fail("restarted")

    action = services.bring_back(FrozenTarget(), topology.one("postgresql"))
    assert action == "continued 2 stopped process(es); healthy, not restarted"
    assert continued == [("postgresql", (100, 101))]


def test_restart_by_scrape_target_finds_the_exporter_not_the_service_it_describes(
        topology, fake_stack):
    # TargetDown of redis_exporter carries service="redis" (what it describes); only
    # its instance label names the exporter.
    health, actions = fake_stack
    exporter = topology.one("redis_exporter")
    health[(exporter.host, "redis_exporter")] = False
    outcome = services.restart(topology, None, unhealthy_only=True, wait_s=0,
                               scrape_target=exporter.metrics_endpoint)
    assert outcome.ok and actions == [f"redis_exporter@{exporter.host}"]
    app1 = next(s for s in topology.instances("app") if s.host == "app1")
    services.restart(topology, None, wait_s=0, scrape_target=app1.metrics_endpoint)
    assert actions[-1] == "app@app1"


def test_restart_by_an_unknown_scrape_target_names_the_valid_ones(topology, fake_stack):
    from infra.ops.outcome import OpsError

    with pytest.raises(OpsError, match=r"no scrape target '127\.0\.0\.1:1'.*redis_exporter@"):
        services.restart(topology, None, scrape_target="127.0.0.1:1")
    with pytest.raises(OpsError, match="either --scrape-target or --service"):
        services.restart(topology, "redis", scrape_target="127.0.0.1:1")
    with pytest.raises(OpsError, match="needs --service"):
        services.restart(topology, None)


# --- the local target's own words: HOST DOWN, booting a host, supervisorctl restart ------
@pytest.fixture
def local_stack(topology, monkeypatch):
    """The lab stack on the local target, its probes and supervisord faked per host."""
    hosts_up = {h.name for h in topology.hosts}
    health = {}
    calls = []

    def supervisorctl(_t, host, *args, timeout=30):
        calls.append((host, *args))
        return local.subprocess.CompletedProcess(args, 0, f"{args[-1]}: stopped\n"
                                                 f"{args[-1]}: started\n", "")

    monkeypatch.setattr(local, "supervisord_pid",
                        lambda _t, host: 4321 if host in hosts_up else None)
    monkeypatch.setattr(local, "program_states",
                        lambda _t, host: {s.name: "RUNNING" for s in topology.host(host).services})
    monkeypatch.setattr(local, "supervisorctl", supervisorctl)
    monkeypatch.setattr(local.probes, "probe",
                        lambda _t, svc: Health(health.get((svc.host, svc.name), True), "probe"))
    monkeypatch.setattr(local.probes, "alive", lambda _t, svc: Health(False, "liveness"))
    monkeypatch.setattr(local.LocalTarget, "state",
                        lambda self, svc: ServiceState(svc.host, svc.name, "RUNNING", pid=None))
    return hosts_up, health, calls


def test_local_status_shows_host_down_and_the_supervisor_words(topology, local_stack):
    hosts_up, health, _calls = local_stack
    hosts_up.discard("cache")
    health[("cache", "redis")] = health[("cache", "redis_exporter")] = False
    outcome = services.status(topology, host="cache")
    assert [(r["address"], r["state"], r["health"]) for r in outcome.records()] == [
        ("127.0.10.41:6379", "HOST DOWN", "DOWN"), ("127.0.10.41:9121", "HOST DOWN", "DOWN")]
    assert outcome.notes == ["unhealthy: redis@cache, redis_exporter@cache"]
    assert services.status(topology, service="postgresql").records()[0]["state"] == "RUNNING"


def test_local_restart_is_supervisorctl_restart(topology, local_stack):
    _hosts_up, health, calls = local_stack
    health[("cache", "redis")] = False
    outcome = services.restart(topology, "redis", unhealthy_only=True, wait_s=0)
    assert calls == [("cache", "restart", "redis")]
    (row,) = outcome.records()
    assert row["action"] == "supervisorctl restart: redis: stopped; redis: started"


def test_local_restart_of_a_down_host_boots_it_or_says_it_is_not_deployed(topology,
                                                                        local_stack):
    hosts_up, _health, calls = local_stack
    hosts_up.discard("cache")
    with pytest.raises(OpsError, match=r"host cache has no supervisord config at .*: the "
                                       r"stack is not deployed here \(run `invoke deploy`\)"):
        services.restart(topology, "redis", wait_s=0)
    assert calls == []


def test_local_restart_that_fails_points_at_the_log(topology, local_stack, monkeypatch):
    monkeypatch.setattr(local, "supervisorctl", lambda *_a, **_k: local.subprocess.
                        CompletedProcess([], 7, "", "redis: ERROR (spawn error)"))
    with pytest.raises(OpsError) as caught:
        services.restart(topology, "redis", wait_s=0)
    assert str(caught.value) == (
        "supervisorctl restart redis on cache failed: redis: ERROR (spawn error); read its "
        "log: python -m infra.ops logs --stack lab --service redis --host cache")
