"""The docker GameDay driver issues exactly these docker commands (a fake runner, no engine)."""

from __future__ import annotations

import json
import signal
from collections.abc import Sequence
from pathlib import Path

import pytest

from infra.targets.base import CommandResult, NetworkFault, Target
from infra.targets.docker import CHAIN, DockerCommandError, DockerTarget
from tests.stacks import docker_lab

RUNNING = {"Status": "running", "Running": True, "Paused": False, "Pid": 4242}


class FakeDocker:
    """Records every argv; answers from a table of (argv prefix → result)."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.answers: list[tuple[list[str], CommandResult]] = []

    def answer(self, prefix: list[str], stdout: str = "", code: int = 0,
               stderr: str = "") -> None:
        self.answers.insert(0, (prefix, CommandResult(tuple(prefix), code, stdout, stderr, 0.0)))

    def state(self, container: str, **state: object) -> None:
        self.answer(["docker", "inspect", "--format", "{{json .State}}", container],
                    json.dumps(state))

    def __call__(self, argv: Sequence[str], timeout_s: float) -> CommandResult:
        argv = list(argv)
        self.calls.append(argv)
        for prefix, result in self.answers:
            if argv[:len(prefix)] == prefix:
                return result
        return CommandResult(tuple(argv), 0, "", "", 0.0)

    def issued(self, verb: str) -> list[list[str]]:
        return [c for c in self.calls if c[1] == verb]


@pytest.fixture
def topology():
    return docker_lab()


@pytest.fixture
def fake():
    return FakeDocker()


@pytest.fixture
def signals():
    return []


@pytest.fixture
def target(topology, fake, signals, tmp_path):
    proc = tmp_path / "proc"
    proc.mkdir()
    return DockerTarget(topology, runner=fake, send_signal=lambda p, s: signals.append((p, s)),
                        proc=proc)


def visible(target: DockerTarget, pid: int, state: str = "S") -> None:
    """Make a pid visible to the driver (as the Docker host's /proc would)."""
    d: Path = target._proc / str(pid)
    d.mkdir()
    (d / "stat").write_text(f"{pid} (proc) {state} 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 0\n")


def test_is_a_target_driver(target):
    assert isinstance(target, Target) and target.name == "docker"


def test_state_maps_docker_status_to_supervisor_words(target, fake, topology):
    pg = topology.one("postgresql")
    fake.state("cp-lab-db-postgresql", **RUNNING)
    fake.answer(["docker", "top", "cp-lab-db-postgresql"], "PID\n4242\n4300\n")
    state = target.state(pg)
    assert (state.state, state.pid, state.paused_pids) == ("RUNNING", 4242, ())
    assert fake.calls == [
        ["docker", "inspect", "--format", "{{json .State}}", "cp-lab-db-postgresql"],
        ["docker", "top", "cp-lab-db-postgresql", "-eo", "pid"]]

    fake.state("cp-lab-db-postgresql", **{**RUNNING, "Paused": True, "Status": "paused"})
    assert target.state(pg).paused_pids == (4242, 4300)
    fake.state("cp-lab-db-postgresql", Status="restarting", Running=True, Pid=0)
    assert target.state(pg).state == "BACKOFF"
    fake.answer(["docker", "inspect"], code=1, stderr="No such object")
    assert target.state(pg).state == "UNKNOWN"


def test_start_stop(target, fake, topology):
    redis = topology.one("redis")
    fake.state("cp-lab-cache-redis", Status="exited", Running=False, Pid=0)
    target.start(redis)
    target.stop(redis)
    assert fake.issued("start") == [["docker", "start", "cp-lab-cache-redis"]]
    assert fake.issued("stop") == [["docker", "stop", "--time", "20", "cp-lab-cache-redis"]]

    fake.calls.clear()
    fake.state("cp-lab-cache-redis", **RUNNING)
    target.start(redis)  # running: nothing to do
    assert [c[1] for c in fake.calls] == ["inspect"]


def test_kill_signals_the_main_process_from_the_host_so_docker_restarts_it(
        target, fake, signals, topology):
    app = topology.instances("app")[1]
    fake.state("cp-lab-app2-app", **RUNNING)
    fake.answer(["docker", "top", "cp-lab-app2-app"], "PID\n4242\n4250\n4251\n")
    visible(target, 4242)
    assert target.kill(app, signal.SIGKILL) == [4242]
    assert signals == [(4242, signal.SIGKILL)]
    assert fake.issued("kill") == []  # `docker kill` would disable the restart policy


def test_kill_falls_back_to_docker_kill_when_pids_are_not_visible(target, fake, signals,
                                                                 topology):
    app = topology.instances("app")[0]
    fake.state("cp-lab-app1-app", **RUNNING)
    fake.answer(["docker", "top", "cp-lab-app1-app"], "PID\n4242\n")
    target.kill(app, signal.SIGTERM)
    assert signals == []
    assert fake.issued("kill") == [["docker", "kill", "--signal", "SIGTERM", "cp-lab-app1-app"]]


def test_pause_and_resume(target, fake, signals, topology):
    pgb = topology.one("pgbouncer")
    fake.state("cp-lab-pool-pgbouncer", **RUNNING)
    fake.answer(["docker", "top", "cp-lab-pool-pgbouncer"], "PID\n4242\n")
    assert target.pause(pgb) == [4242]
    assert fake.issued("pause") == [["docker", "pause", "cp-lab-pool-pgbouncer"]]

    fake.state("cp-lab-pool-pgbouncer", **{**RUNNING, "Paused": True})
    visible(target, 4242, state="T")  # also stopped by a signal (ProcessHang, main only)
    assert target.resume(pgb, [4242]) == [4242]
    assert fake.issued("unpause") == [["docker", "unpause", "cp-lab-pool-pgbouncer"]]
    assert signals == [(4242, signal.SIGCONT)]


def test_run_execs_in_the_container_of_the_users_service(target, fake):
    target.run("db", ["psql", "-c", "select 1"], 10, user="cp-postgresql",
               env={"PGPASSWORD": "x", "A": "1"})
    target.run("db", ["pg_isready"], 5, user="cp-postgres-exporter")
    target.run("cache", ["redis-cli", "ping"], 5)
    target.run("edge", ["nginx", "-s", "reload"], 5, user="root")
    assert fake.issued("exec") == [
        ["docker", "exec", "-u", "cp-postgresql", "-e", "A=1", "-e", "PGPASSWORD=x",
         "cp-lab-db-postgresql", "psql", "-c", "select 1"],
        ["docker", "exec", "-u", "cp-postgres-exporter", "cp-lab-db-postgres_exporter",
         "pg_isready"],
        ["docker", "exec", "cp-lab-cache-redis", "redis-cli", "ping"],
        ["docker", "exec", "-u", "0", "cp-lab-edge-nginx", "nginx", "-s", "reload"]]


def netns_prefix(sandbox: str) -> list[str]:
    return ["docker", "run", "--rm", "--network", f"container:{sandbox}", "--cap-add",
            "NET_ADMIN", "--cap-add", "NET_RAW", "--label", "civicpulse.stack=lab",
            "--label", "civicpulse.role=gameday-netns", "civicpulse/nettools:lab", "sh", "-c"]


def test_partition_drops_the_clients_hosts_at_the_destination(target, fake):
    fault = NetworkFault(kind="drop", from_users=("cp-pgbouncer",), daddr="127.0.10.32",
                         dport=5432, comment="gameday run1 db-partition")
    target.apply_network_fault(fault)
    (call,) = fake.issued("run")
    assert call[:-1] == netns_prefix("cp-lab-db")
    assert call[-1] == (
        f"iptables -w -N {CHAIN} 2>/dev/null || true; "
        f"iptables -w -C INPUT -j {CHAIN} 2>/dev/null || iptables -w -I INPUT 1 -j {CHAIN}; "
        f"iptables -w -A {CHAIN} -s 172.16.10.31 -p tcp --dport 5432 -m comment --comment "
        "'gameday run1 db-partition' -j DROP")


def test_packet_loss_from_every_app_host(target, fake):
    fault = NetworkFault(kind="loss", from_users=("cp-app",), daddr="127.0.10.41",
                         dport=6379, percent=30)
    host, rules = target.rules_for(fault)
    assert host.sandbox == "cp-lab-cache"
    assert rules == [
        f"iptables -w -A {CHAIN} -s {ip} -p tcp --dport 6379 -m statistic --mode random "
        "--probability 0.30 -j DROP" for ip in ("172.16.10.21", "172.16.10.22")]
    with pytest.raises(DockerCommandError, match="'redirect' is not implemented"):
        target.apply_network_fault(NetworkFault(kind="redirect", from_users=(),
                                                daddr="127.0.10.41", redirect_to=("x", 1)))


def test_remove_network_faults_sweeps_every_host_and_reconnects(target, fake, topology):
    networks = json.dumps({"cp-lab": {"IPAddress": "172.16.10.1"}})
    for host in topology.hosts:
        fake.answer(["docker", "inspect", "--format", "{{json .NetworkSettings.Networks}}",
                     f"cp-lab-{host.name}"], networks if host.name != "db" else "{}")
    target.remove_network_faults()
    sweeps = fake.issued("run")
    assert [c[4] for c in sweeps] == [f"container:cp-lab-{h.name}" for h in topology.hosts]
    assert all(c[-1].startswith(f"iptables -w -D INPUT -j {CHAIN}") for c in sweeps)
    assert fake.issued("network") == [["docker", "network", "connect", "--alias", "db", "--ip",
                                       "172.16.10.32", "cp-lab", "cp-lab-db"]]


def test_network_faults_active_looks_at_every_host(target, fake, topology):
    networks = json.dumps({"cp-lab": {}})
    fake.answer(["docker", "inspect", "--format", "{{json .NetworkSettings.Networks}}"],
                networks)
    fake.answer(["docker", "run"], code=1)
    assert target.network_faults_active() is False
    assert len(fake.issued("run")) == len(topology.hosts)
    fake.answer(netns_prefix("cp-lab-cache"), code=0)
    assert target.network_faults_active() is True


def test_disconnect_and_connect_a_host(target, fake):
    target.disconnect_host("app2")
    target.connect_host("app2")
    assert fake.issued("network") == [
        ["docker", "network", "disconnect", "--force", "cp-lab", "cp-lab-app2"],
        ["docker", "network", "connect", "--alias", "app2", "--ip", "172.16.10.22", "cp-lab",
         "cp-lab-app2"]]


def test_a_failing_command_says_which_and_why(target, fake, topology):
    fake.answer(["docker", "stop"], code=1, stderr="Error: No such container: cp-lab-db-postgresql")
    with pytest.raises(DockerCommandError, match=r"`docker stop --time 20 cp-lab-db-postgresql` "
                                                r"failed \(exit 1\): Error: No such container"):
        target.stop(topology.one("postgresql"))
