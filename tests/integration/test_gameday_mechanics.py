"""The GameDay's fault mechanics on this kernel, without a deployed stack.

Real nftables rules, a real fault proxy, a real supervisord, real SIGSTOP/SIGCONT,
a real size-limited mount: each against throwaway listeners and programs on
127.0.13.x that these tests start and stop themselves. Root only (nft, mount,
setpriv); skipped elsewhere.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from gameday.cleanup import cleanup
from gameday.faults import fault_class
from gameday.faults.base import FaultContext
from gameday.rollback_log import RollbackLog, read_rollback_log
from gameday.scenario import FaultSpec
from infra import procfs
from infra.targets import nft
from infra.targets.base import NetworkFault
from infra.targets.local import LocalTarget
from infra.topology import REPO_ROOT, load_stack

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("nft"),
                       reason="needs root and nftables"),
]

NET = "127.0.13"
CLIENT_USER = "nobody"  # stands in for a service user (meta skuid scoping)


class TestTarget(LocalTarget):
    """The local target, with every service's system user replaced by `nobody`."""

    __test__ = False

    def user_of(self, service_name: str) -> str:
        return CLIENT_USER


#: The nft table of the `gdmech` stack below.
TABLE = nft.table_for("gdmech")


@pytest.fixture
def mech_topology(tmp_path: Path):
    # Short: supervisord's control socket lives under the state dir, and AF_UNIX paths
    # are limited to 108 bytes (pytest's tmp_path is too deep for that).
    state = Path(tempfile.mkdtemp(prefix="gdm-", dir="/tmp"))
    stack = textwrap.dedent(f"""\
        stack: gdmech
        state_dir: {state}
        hosts:
          edge: {{address: {NET}.10, services: [nginx]}}
          app1: {{address: {NET}.21, services: [app]}}
          pool: {{address: {NET}.31, services: [{{name: pgbouncer, port: 16432}}]}}
          db: {{address: {NET}.32, services: [postgresql]}}
          cache: {{address: {NET}.41, services: [{{name: redis, port: 16379}}]}}
          monitor: {{address: {NET}.50, services: [prometheus, alertmanager]}}
        """)
    path = tmp_path / "gdmech.yaml"
    path.write_text(stack)
    yield load_stack(path)
    shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(autouse=True)
def no_leftover_rules():
    nft.delete_table(TABLE)
    yield
    nft.delete_table(TABLE)


def echo_server(address: str, port: int) -> subprocess.Popen:
    code = textwrap.dedent(f"""
        import socket, threading
        s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("{address}", {port})); s.listen(64)
        def serve(c):
            with c:
                while (d := c.recv(4096)):
                    c.sendall(d)
        while True:
            c, _ = s.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()
        """)
    proc = subprocess.Popen(["/usr/bin/python3", "-c", code])
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            socket.create_connection((address, port), timeout=0.2).close()
            return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("echo server did not start")


def probe(address: str, port: int, n: int = 3, as_user: str | None = None,
          timeout: float = 1.0) -> tuple[int, int, float]:
    """(ok, failed, median round-trip ms) of n connect+echo round trips."""
    code = textwrap.dedent(f"""
        import socket, time
        ok = fail = 0; lat = []
        for _ in range({n}):
            t = time.monotonic()
            try:
                s = socket.create_connection(("{address}", {port}), timeout={timeout})
                s.sendall(b"x" * 64); s.recv(64); s.close(); ok += 1
                lat.append((time.monotonic() - t) * 1000)
            except OSError:
                fail += 1
        lat.sort()
        print(ok, fail, lat[len(lat) // 2] if lat else -1)
        """)
    argv = ["/usr/bin/python3", "-c", code]
    if as_user:
        argv = ["setpriv", f"--reuid={as_user}", "--regid=nogroup", "--clear-groups", *argv]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True).stdout
    ok, failed, median = out.split()
    return int(ok), int(failed), float(median)


def _echo_standing_in_for(topology, kind: str, address: str, port: int):
    """An echo server where the service `kind` listens; yields that service."""
    server = echo_server(address, port)
    yield topology.one(kind)
    server.kill()
    server.wait()


@pytest.fixture
def redis_like(mech_topology):
    yield from _echo_standing_in_for(mech_topology, "redis", f"{NET}.41", 16379)


@pytest.fixture
def pgbouncer_like(mech_topology):
    yield from _echo_standing_in_for(mech_topology, "pgbouncer", f"{NET}.31", 16432)


def make_fault(topology, target, kind, service, duration=30, **params):
    rollback_log = RollbackLog.create(topology.state_dir, "mech", topology.stack)
    spec = FaultSpec(kind=kind, target={"service": service}, parameters=params,
                     duration_s=duration)
    ctx = FaultContext(topology=topology, target=target, rollback_log=rollback_log,
                       scenario_id="mech", run_id="mech")
    return fault_class(kind)(spec, ctx), rollback_log


def test_partition_cuts_off_only_the_scoped_user(mech_topology, redis_like):
    target = TestTarget(mech_topology)
    assert probe(redis_like.address, redis_like.port, as_user=CLIENT_USER)[:2] == (3, 0)
    fault, rollback_log = make_fault(mech_topology, target, "network_partition", "redis",
                                     from_services=["app"])
    asyncio.run(fault.inject())
    assert nft.table_exists(TABLE)
    assert probe(redis_like.address, redis_like.port, as_user=CLIENT_USER,
                 timeout=0.5)[:2] == (0, 3)
    assert probe(redis_like.address, redis_like.port)[:2] == (3, 0)  # root: not scoped
    asyncio.run(fault.rollback())
    assert not nft.table_exists(TABLE)
    assert probe(redis_like.address, redis_like.port, as_user=CLIENT_USER)[:2] == (3, 0)
    assert rollback_log.finish()


def test_packet_loss_drops_a_share(mech_topology, redis_like):
    target = TestTarget(mech_topology)
    target.apply_network_fault(NetworkFault("loss", (CLIENT_USER,), redis_like.address,
                                            redis_like.port, percent=50))
    ok, failed, _ = probe(redis_like.address, redis_like.port, n=30, as_user=CLIENT_USER,
                          timeout=0.3)
    target.remove_network_faults()
    assert failed >= 3 and ok >= 3, (ok, failed)


def test_latency_proxy_in_the_data_path(mech_topology, pgbouncer_like):
    target = TestTarget(mech_topology)
    address, port = pgbouncer_like.address, pgbouncer_like.port
    _, _, before = probe(address, port, as_user=CLIENT_USER)
    fault, rollback_log = make_fault(mech_topology, target, "latency", "pgbouncer",
                                     latency_ms=200, from_services=["app"])

    async def scenario():
        await fault.inject()
        try:
            during = await asyncio.to_thread(probe, address, port, 3, CLIENT_USER)
            root = await asyncio.to_thread(probe, address, port)
            proxies = procfs.pids_with_marker("civicpulse-gameday-gdmech-proxy-pool-mech")
        finally:
            await fault.rollback()
        return during, root, proxies

    (_, failed, during), (_, _, root), proxies = asyncio.run(scenario())
    assert failed == 0 and proxies
    assert 190 <= during - before <= 400, (before, during)
    assert root < 100  # root's connections (the proxy's upstream) are not redirected
    assert not nft.table_exists(TABLE)
    assert not procfs.pids_with_marker("civicpulse-gameday-gdmech-proxy")
    assert probe(address, port, as_user=CLIENT_USER)[2] < 100
    assert rollback_log.finish()


KILLED_ENGINE = """
import asyncio, sys, time
from gameday.faults import fault_class
from gameday.faults.base import FaultContext
from gameday.rollback_log import RollbackLog
from gameday.scenario import FaultSpec
from infra.targets.local import LocalTarget
from infra.topology import REPO_ROOT, load_stack

class Target(LocalTarget):
    def user_of(self, service_name):
        return "nobody"

topology = load_stack(sys.argv[1])
rollback_log = RollbackLog.create(topology.state_dir, "mech", topology.stack)
spec = FaultSpec(kind="latency", target={"service": "pgbouncer"},
                 parameters={"latency_ms": 50}, duration_s=30)
ctx = FaultContext(topology=topology, target=Target(topology), rollback_log=rollback_log,
                   scenario_id="mech", run_id="mech")

async def main():
    await fault_class("latency")(spec, ctx).inject()
    print("INJECTED", flush=True)
    await asyncio.sleep(600)

asyncio.run(main())
"""


def test_cleanup_after_a_killed_run_removes_rules_and_proxy(mech_topology, pgbouncer_like):
    engine = subprocess.Popen([sys.executable, "-c", KILLED_ENGINE, str(mech_topology.source)],
                              stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT)
    assert engine.stdout.readline().strip() == "INJECTED"
    engine.kill()  # SIGKILL: no rollback can run
    engine.wait(10)
    assert nft.table_exists(TABLE)
    assert procfs.pids_with_marker("civicpulse-gameday-gdmech-proxy")
    report = cleanup(mech_topology, TestTarget(mech_topology), check_health=False)
    assert not report.problems, report.problems
    assert report.rollback_log_found
    assert not nft.table_exists(TABLE)
    assert not procfs.pids_with_marker("civicpulse-gameday-gdmech-")
    assert read_rollback_log(mech_topology.state_dir) is None
    assert probe(pgbouncer_like.address, pgbouncer_like.port, as_user=CLIENT_USER)[:2] == (3, 0)


def test_cpu_busy_loops_are_bounded_and_killed(mech_topology):
    target = TestTarget(mech_topology)
    fault, rollback_log = make_fault(mech_topology, target, "cpu_saturation", "app", duration=60,
                                     workers=2, nice=10, as_service_user=False)
    marker = "civicpulse-gameday-gdmech-cpu-app1-mech"

    async def scenario():
        await fault.inject()
        await asyncio.sleep(0.3)
        running = procfs.pids_with_marker(marker)
        await fault.rollback()
        return running

    assert len(asyncio.run(scenario())) >= 2
    assert not procfs.pids_with_marker(marker)
    assert rollback_log.finish()


@pytest.fixture
def small_volume(tmp_path):
    mount = tmp_path / "hosts" / "db" / "pgvol"
    mount.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)], check=True)
    (mount / "data").mkdir()
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


def test_disk_full_fills_a_small_volume_and_frees_it(mech_topology, small_volume):
    target = TestTarget(mech_topology)
    fault, rollback_log = make_fault(mech_topology, target, "disk_full", "postgresql",
                                     path=str(small_volume / "data"), leave_mb=0)
    assert fault.preflight() == []
    asyncio.run(fault.inject())
    st = os.statvfs(small_volume)
    assert st.f_bavail * st.f_frsize < 256 * 1024
    with pytest.raises(OSError):
        (small_volume / "data" / "more").write_bytes(b"x" * 1024 * 1024)
    asyncio.run(fault.rollback())
    st = os.statvfs(small_volume)
    assert st.f_bavail * st.f_frsize > 14 * 2**20
    assert rollback_log.finish()


@pytest.fixture
def ext4_volume(mech_topology):
    """PostgreSQL's data volume as the postgresql role makes it: a loop-mounted ext4
    image (32 MiB) at <host>/postgresql/volume, data directory inside."""
    from infra.paths import host_dir

    base = host_dir(mech_topology, "db")
    image, mount = base / "postgresql-volume.img", base / "postgresql" / "volume"
    mount.mkdir(parents=True)
    subprocess.run(["truncate", "--size", "32M", str(image)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True)
    subprocess.run(["mount", "-o", "loop", str(image), str(mount)], check=True)
    (mount / "data").mkdir()
    os.chown(mount / "data", 65534, 65534)  # nobody: stands in for the service user
    os.chmod(mech_topology.state_dir, 0o755)  # mkdtemp made it 0700
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


def test_disk_full_on_ext4_leaves_only_roots_reserve(mech_topology, ext4_volume):
    from infra.targets.local_lifecycle import loop_devices_backed_by, release_volumes

    fault, rollback_log = make_fault(mech_topology, TestTarget(mech_topology), "disk_full",
                                     "postgresql", leave_mb=0)
    assert fault.path == ext4_volume / "data" and fault.preflight() == []
    asyncio.run(fault.inject())
    st = os.statvfs(ext4_volume)
    assert st.f_bavail == 0 and st.f_bfree * st.f_frsize >= 2**20  # root's reserve left
    as_service = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
         "dd", "if=/dev/zero", f"of={ext4_volume / 'data' / 'more'}", "bs=64k", "count=16",
         "conv=fsync"], capture_output=True, text=True, timeout=30)
    assert as_service.returncode != 0 and "No space left" in as_service.stderr
    (ext4_volume / "root-can").write_bytes(b"x" * 65536)  # the runbook's tools still write
    asyncio.run(fault.rollback())
    assert os.statvfs(ext4_volume).f_bavail * st.f_frsize > 20 * 2**20
    assert rollback_log.finish()

    # destroy's part: unmount the volume and free its loop device.
    assert release_volumes(mech_topology, lambda _m: None) == []
    assert not os.path.ismount(ext4_volume)
    assert loop_devices_backed_by(mech_topology.state_dir) == []


def test_disk_full_refuses_the_root_filesystem(mech_topology, tmp_path):
    fault, _ = make_fault(mech_topology, TestTarget(mech_topology), "disk_full", "postgresql",
                          path=str(tmp_path))
    (problem,) = fault.preflight()
    assert "not on a dedicated size-limited volume" in problem


@pytest.fixture
def supervised(mech_topology):
    """A real supervisord for host `cache`, running a program named `redis` (a shell
    with two sleeping children, so that it has a process tree)."""
    from infra.paths import host_dir

    base = host_dir(mech_topology, "cache")
    sup = base / "supervisor"
    (sup / "conf.d").mkdir(parents=True)
    (base / "log").mkdir()
    (sup / "supervisord.conf").write_text(textwrap.dedent(f"""\
        [unix_http_server]
        file={sup}/supervisor.sock
        chmod=0700
        [supervisord]
        logfile={base}/log/supervisord.log
        pidfile={sup}/supervisord.pid
        nodaemon=false
        [rpcinterface:supervisor]
        supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface
        [supervisorctl]
        serverurl=unix://{sup}/supervisor.sock
        [program:redis]
        command=/bin/sh -c "sleep 1000 & sleep 1000 & wait"
        autorestart=true
        startsecs=1
        stopasgroup=true
        killasgroup=true
        """))
    subprocess.run(["/usr/bin/supervisord", "-c", str(sup / "supervisord.conf")], check=True)
    target = TestTarget(mech_topology)
    service = mech_topology.one("redis")
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not target.state(service).running:
        time.sleep(0.2)
    yield target, service
    subprocess.run(["/usr/bin/supervisorctl", "-c", str(sup / "supervisord.conf"),
                    "shutdown"], capture_output=True, check=False)
    time.sleep(1)


def wait_for(predicate, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def test_local_target_drives_a_real_supervisord(supervised):
    target, service = supervised
    state = target.state(service)
    assert state.running and state.pid
    tree = target.processes(service)
    assert len(tree) == 3  # the shell and its two sleeps

    paused = target.pause(service)
    assert sorted(paused) == sorted(tree)
    assert sorted(target.state(service).paused_pids) == sorted(tree)
    target.resume(service, paused)
    assert target.state(service).paused_pids == ()

    old_pid = state.pid
    target.kill(service)  # SIGKILL the main process: supervisord restarts it
    assert wait_for(lambda: target.state(service).running
                    and target.state(service).pid != old_pid)

    target.stop(service)
    assert target.state(service).state == "STOPPED"
    target.start(service)
    assert target.state(service).running


def test_hang_fault_and_cleanup_after_a_killed_run(mech_topology, supervised):
    target, service = supervised
    fault, _ = make_fault(mech_topology, target, "process_hang", "redis")
    asyncio.run(fault.inject())
    assert len(target.state(service).paused_pids) == 3
    report = cleanup(mech_topology, TestTarget(mech_topology), check_health=False)
    assert not report.problems
    assert target.state(service).paused_pids == ()
    assert read_rollback_log(mech_topology.state_dir) is None


def test_stop_fault_rolls_back(mech_topology, supervised):
    target, service = supervised
    fault, rollback_log = make_fault(mech_topology, target, "service_stop", "redis", signal="KILL")
    asyncio.run(fault.inject())
    assert target.state(service).state == "STOPPED"
    asyncio.run(fault.rollback())
    assert target.state(service).running
    assert rollback_log.finish()
