"""The ops commands on the docker target: status, logs and restart through the driver.

No engine: the driver's fake runner (test_docker_driver.FakeDocker) answers `docker
inspect`, `docker logs`, `docker exec` and `docker restart`, and records every command.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
from test_docker_driver import RUNNING, FakeDocker

from infra.health import Health
from infra.ops import cli, services
from infra.ops.outcome import OpsError
from infra.targets.base import ServiceAbsent
from infra.targets.docker import DockerTarget, container_health, merge_streams
from tests.stacks import docker_lab

NO_SUCH = "Error: No such object: {}"
STAMP = "2025-03-01T10:00:{:02d}.000000000Z"


@pytest.fixture
def topology(tmp_path):
    return dataclasses.replace(docker_lab(), state_dir=tmp_path / "state",
                               target="docker")


@pytest.fixture
def fake():
    return FakeDocker()


@pytest.fixture
def target(topology, fake, monkeypatch, tmp_path):
    proc = tmp_path / "proc"
    proc.mkdir()
    driver = DockerTarget(topology, runner=fake, send_signal=lambda _p, _s: None, proc=proc)
    monkeypatch.setattr(services, "target_for", lambda _t: driver)
    return driver


def health(status: str, output: str = "") -> dict:
    """A running container's State with Docker's health check verdict and last probe."""
    return {**RUNNING, "Health": {"Status": status, "FailingStreak": 0,
                                  "Log": [{"ExitCode": 0 if status == "healthy" else 1,
                                           "Output": output}]}}


def absent(fake: FakeDocker, container: str) -> None:
    fake.answer(["docker", "inspect", "--format", "{{json .State}}", container], code=1,
                stderr=NO_SUCH.format(container))


def stop_timeout(fake: FakeDocker, container: str, seconds: int | None) -> None:
    fake.answer(["docker", "inspect", "--format", "{{json .Config.StopTimeout}}", container],
                json.dumps(seconds))


# --- the driver's ops operations ---------------------------------------------------------
def test_health_is_dockers_health_check_with_the_last_probes_output():
    assert container_health(health("healthy")) == Health(True, "health check healthy")
    unhealthy = container_health(health("unhealthy", "curl: (22) The requested URL "
                                                     "returned error: 503\n"))
    assert unhealthy == Health(False, "health check unhealthy: curl: (22) The requested URL "
                                      "returned error: 503")
    assert not container_health(health("starting")).ok
    # No health check (an image without one): healthy while it runs.
    assert container_health(RUNNING) == Health(True, "running (no health check)")
    assert container_health({"Status": "exited", "Running": False, "ExitCode": 137}) == \
        Health(False, "container exited (exit code 137)")
    assert not container_health({**health("healthy"), "Paused": True}).ok
    assert not container_health({"Status": "restarting", "Running": True,
                                 "Restarting": True, "ExitCode": 1}).ok


def test_logs_merge_stdout_and_stderr_in_time_order():
    stdout = f"{STAMP.format(1)} GET /a 200\n{STAMP.format(3)} GET /b 200\n"
    stderr = f"{STAMP.format(2)} WARNING slow\n  continued\n{STAMP.format(4)} ERROR x\n"
    assert merge_streams(stdout, stderr) == ["GET /a 200", "WARNING slow", "  continued",
                                             "GET /b 200", "ERROR x"]


def test_state_words_and_addresses(target, fake, topology):
    redis = topology.one("redis")
    fake.state("cp-lab-cache-redis", **RUNNING)
    assert target.state_word(redis) == "RUNNING"
    fake.state("cp-lab-cache-redis", **{**RUNNING, "Status": "paused", "Paused": True})
    assert target.state_word(redis) == "PAUSED"
    fake.state("cp-lab-cache-redis", Status="restarting", Running=True, Restarting=True)
    assert target.state_word(redis) == "BACKOFF"
    absent(fake, "cp-lab-cache-redis")
    assert target.state_word(redis) == "ABSENT"
    fake.answer(["docker", "inspect"], code=1, stderr="Cannot connect to the Docker daemon")
    assert target.state_word(redis) == "UNREACHABLE"
    assert target.address(redis) == "cache:6379"


def test_app_liveness_is_asked_inside_its_container(target, fake, topology):
    app = topology.instances("app")[0]
    fake.answer(["docker", "exec", "cp-lab-app1-app", "curl", "-sS"], "503")
    alive = target.alive(app)
    assert alive.ok and alive.detail == "HTTP 503; metrics HTTP 200"
    health_url = f"http://127.0.0.1:{app.port}{topology.workload.health_path}"
    assert fake.issued("exec") == [
        ["docker", "exec", "cp-lab-app1-app", "curl", "-sS", "-o", "/dev/null", "--max-time",
         "2", "-w", "%{http_code}", health_url],
        ["docker", "exec", "cp-lab-app1-app", "curl", "-fsS", "-o", "/dev/null", "--max-time",
         "2", f"http://127.0.0.1:{app.metrics_port}/metrics"]]
    fake.answer(["docker", "exec", "cp-lab-app1-app", "curl", "-sS"], "000", code=7,
                stderr="curl: (7) Failed to connect to 127.0.0.1 port 8000")
    alive = target.alive(app)
    assert not alive.ok and "Failed to connect" in alive.detail
    fake.answer(["docker", "exec"], code=1,
                stderr="Error response from daemon: No such container: cp-lab-app1-app")
    assert target.alive(app).detail.startswith("no container cp-lab-app1-app")


def test_logs_of_a_missing_container_say_so(target, fake, topology):
    fake.answer(["docker", "logs"], code=1,
                stderr="Error response from daemon: No such container: cp-lab-db-postgresql")
    with pytest.raises(ServiceAbsent, match="no container cp-lab-db-postgresql on this Docker "
                                            "engine .is the stack deployed"):
        target.logs(topology.one("postgresql"), 10)


# --- the commands -------------------------------------------------------------------------
def test_status_healthy_unhealthy_and_absent(target, fake, topology):
    fake.state("cp-lab-app1-app", **health("healthy"))
    fake.state("cp-lab-app2-app", **health("unhealthy", "curl: (7) Failed to connect"))
    outcome = services.status(topology, service="app")
    assert [(r["host"], r["address"], r["state"], r["health"], r["detail"])
            for r in outcome.records()] == [
        ("app1", "app1:8000", "RUNNING", "ok", "health check healthy"),
        ("app2", "app2:8000", "RUNNING", "DOWN",
         "health check unhealthy: curl: (7) Failed to connect")]
    assert not outcome.ok and outcome.notes == ["unhealthy: app@app2"]

    absent(fake, "cp-lab-cache-redis")
    fake.state("cp-lab-cache-redis_exporter", **RUNNING)
    outcome = services.status(topology, host="cache")
    assert [(r["service"], r["state"], r["health"]) for r in outcome.records()] == [
        ("redis", "ABSENT", "DOWN"), ("redis_exporter", "RUNNING", "ok")]
    assert outcome.records()[0]["detail"].startswith("no container cp-lab-cache-redis")
    assert outcome.notes == ["unhealthy: redis@cache"]
    # Only `docker inspect`: nothing is probed over the network from here.
    assert {c[1] for c in fake.calls} == {"inspect"}


def test_status_waits_until_docker_says_healthy(target, fake, topology, monkeypatch):
    fake.state("cp-lab-cache-redis", **health("starting"))
    naps = []

    def sleep(seconds):
        naps.append(seconds)
        fake.state("cp-lab-cache-redis", **health("healthy"))

    monkeypatch.setattr(services.time, "sleep", sleep)
    outcome = services.status(topology, service="redis", wait_s=30)
    assert outcome.ok and naps == [1.0]


def test_logs_with_grep_through_docker_logs(target, fake, topology):
    for host in ("app1", "app2"):
        lines = [f'{STAMP.format(i)} {{"status": {500 if i % 10 == 0 else 200}, "i": {i}}}'
                 for i in range(50)]
        fake.answer(["docker", "logs", "--timestamps", "--tail", "5000", f"cp-lab-{host}-app"],
                    "\n".join(lines[::2]) + "\n", stderr="\n".join(lines[1::2]) + "\n")
    outcome = services.logs(topology, "app", lines=2, grep='"status": 5..')
    assert outcome.ok
    assert outcome.notes[0] == "== app@app1: docker logs cp-lab-app1-app (last 2 matching lines)"
    assert outcome.notes[1:3] == ['{"status": 500, "i": 30}', '{"status": 500, "i": 40}']
    assert outcome.notes[3].startswith("== app@app2: docker logs cp-lab-app2-app")
    # Without --grep only the lines asked for are fetched.
    fake.calls.clear()
    services.logs(topology, "app", host="app1", lines=20)
    assert fake.issued("logs") == [["docker", "logs", "--timestamps", "--tail", "20",
                                    "cp-lab-app1-app"]]


def test_logs_of_an_undeployed_stack_fail_clearly(target, fake, topology):
    fake.answer(["docker", "logs"], code=1,
                stderr="Error response from daemon: No such container: cp-lab-cache-redis")
    outcome = services.logs(topology, "redis")
    assert not outcome.ok
    assert outcome.notes == ["== redis@cache: no container cp-lab-cache-redis on this Docker "
                             "engine (is the stack deployed? invoke deploy --target docker)"]


def test_restart_unhealthy_restarts_only_the_unhealthy_container(target, fake, topology):
    fake.state("cp-lab-app1-app", **health("healthy"))
    fake.state("cp-lab-app2-app", **health("unhealthy", "curl: (7) Failed to connect"))
    # app2's workers do not answer at all: not alive either.
    fake.answer(["docker", "exec", "cp-lab-app2-app"], "000", code=7,
                stderr="curl: (7) Failed to connect to 127.0.0.1 port 8000")
    fake.answer(["docker", "top"], "PID\n4242\n")
    stop_timeout(fake, "cp-lab-app2-app", 35)

    def engine(argv, timeout_s):
        if argv[1] == "restart":
            fake.state("cp-lab-app2-app", **health("healthy"))  # Docker's next check passes
        return fake(argv, timeout_s)

    target._runner = engine

    outcome = services.restart(topology, "app", unhealthy_only=True, wait_s=5)
    assert outcome.ok, outcome.notes
    assert fake.issued("restart") == [["docker", "restart", "--time", "35", "cp-lab-app2-app"]]
    rows = outcome.records()
    assert rows[0]["action"].startswith("answers: left alone")
    assert rows[1]["before"] == "DOWN health check unhealthy: curl: (7) Failed to connect"
    assert rows[1]["action"] == "docker restart --time 35 cp-lab-app2-app"
    assert rows[1]["after"] == "ok"


def test_restart_unhealthy_leaves_an_app_that_answers_503_alone(target, fake, topology):
    # The database is slow: both app containers' checks fail on the 503 of the health
    # view, but the workers answer. Restarting them would be an outage.
    for host in ("app1", "app2"):
        fake.state(f"cp-lab-{host}-app", **health("unhealthy", "curl: (22) The requested "
                                                              "URL returned error: 503"))
    fake.answer(["docker", "exec"], "503")
    outcome = services.restart(topology, "app", unhealthy_only=True, wait_s=0)
    assert fake.issued("restart") == []
    assert all(r["before"].startswith("alive, not ready (health check unhealthy")
               for r in outcome.records())


def test_a_paused_container_is_unpaused_not_restarted(target, fake, topology, monkeypatch):
    monkeypatch.setattr(services.time, "sleep", lambda _s: None)
    fake.state("cp-lab-pool-pgbouncer", **{**health("healthy"), "Status": "paused",
                                           "Paused": True})
    fake.answer(["docker", "top", "cp-lab-pool-pgbouncer"], "PID\n4242\n4243\n")

    def engine(argv, timeout_s):
        if argv[1] == "unpause":
            fake.state("cp-lab-pool-pgbouncer", **health("healthy"))
        return fake(argv, timeout_s)

    target._runner = engine
    outcome = services.restart(topology, "pgbouncer", wait_s=0)
    assert outcome.ok
    assert fake.issued("unpause") == [["docker", "unpause", "cp-lab-pool-pgbouncer"]]
    assert fake.issued("restart") == []
    assert outcome.records()[0]["action"] == ("continued 2 stopped process(es); healthy, "
                                              "not restarted")


def test_restart_of_a_missing_container_fails_with_a_clear_message(target, fake, topology,
                                                                   capsys, monkeypatch):
    absent(fake, "cp-lab-db-postgresql")
    fake.answer(["docker", "inspect", "--format", "{{json .Config.StopTimeout}}",
                 "cp-lab-db-postgresql"], code=1,
                stderr=NO_SUCH.format("cp-lab-db-postgresql"))
    with pytest.raises(OpsError, match=r"^no container cp-lab-db-postgresql on this Docker "
                                       r"engine \(is the stack deployed\? invoke deploy "
                                       r"--target docker\)$"):
        services.restart(topology, "postgresql", wait_s=0)
    assert fake.issued("restart") == []

    # The CLI: exit 2, the message on stderr, no traceback.
    monkeypatch.setattr(cli, "resolve_stack", lambda _name: topology)
    assert cli.main(["restart", "--stack", "lab", "--service", "postgresql"]) == 2
    err = capsys.readouterr().err
    assert "restart: no container cp-lab-db-postgresql on this Docker engine" in err
    assert "Traceback" not in err


def test_a_failing_docker_restart_points_at_the_log(target, fake, topology):
    fake.state("cp-lab-cache-redis", Status="exited", Running=False, ExitCode=1)
    stop_timeout(fake, "cp-lab-cache-redis", None)  # none set: Docker's default
    fake.answer(["docker", "restart"], code=1, stderr="Error response from daemon: "
                                                      "Cannot restart container: oom")
    with pytest.raises(OpsError) as caught:
        services.restart(topology, "redis", wait_s=0)
    assert str(caught.value) == (
        "`docker restart --time 10 cp-lab-cache-redis` failed (exit 1): Error response from "
        "daemon: Cannot restart container: oom; read its log: python -m infra.ops logs "
        "--stack lab --service redis --host cache")
