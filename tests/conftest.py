"""Shared fixtures: a throwaway stack deployed for real, one host of it over SSH.

The integration tests never touch `lab`: they deploy `itest`, a copy of the lab
stack's shape on 127.0.20.0/24, and destroy it at the end of the session. Its
`cache` host is reached by Ansible over real SSH (an sshd started here on a
loopback address), so every run also proves the playbooks work over SSH.
"""

from __future__ import annotations

import copy
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from infra.topology import Topology, load_stack, stack_path

ITEST_NET = "127.0.20"
SSHD_ADDRESS = f"{ITEST_NET}.100"
SSHD_PORT = 2222
SSH_HOST = "cache"


def throwaway_stack(name: str, net: str, ssh: dict | None = None,
                    backups: bool = True) -> dict:
    """The lab stack's shape under another name and address range (`backups=False`:
    without the backup host, as the docker target runs it)."""
    data = copy.deepcopy(yaml.safe_load(stack_path("lab").read_text()))
    if not backups:
        from tests.stacks import without_backups

        data = without_backups(data)
    data["stack"] = name
    for host in data["hosts"].values():
        host["address"] = f"{net}.{host['address'].rsplit('.', 1)[1]}"
    if ssh:
        data["hosts"][SSH_HOST].update(ssh)
    return data


def _wait_port(address: str, port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((address, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listens on {address}:{port} after {timeout}s")


def _needs_root_debian() -> None:
    if os.geteuid() != 0 or not Path("/usr/bin/apt-get").exists():
        pytest.skip("deploy tests need root on Debian (CI runs them)")


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """A real sshd on a loopback address that accepts a key generated here."""
    _needs_root_debian()
    if not Path("/usr/sbin/sshd").exists():
        pytest.skip("openssh-server is not installed (./bootstrap installs it)")
    d = tmp_path_factory.mktemp("sshd")
    os.chmod(d, 0o700)
    for key in ("host_key", "client_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / key)],
                       check=True)
    shutil.copy(d / "client_key.pub", d / "authorized_keys")
    host_key = (d / "host_key.pub").read_text().split()
    (d / "known_hosts").write_text(f"[{SSHD_ADDRESS}]:{SSHD_PORT} {host_key[0]} {host_key[1]}\n")
    (d / "sshd_config").write_text(
        f"ListenAddress {SSHD_ADDRESS}:{SSHD_PORT}\nHostKey {d}/host_key\n"
        f"AuthorizedKeysFile {d}/authorized_keys\nPermitRootLogin prohibit-password\n"
        "PasswordAuthentication no\nStrictModes no\nUsePAM no\n"
        f"PidFile {d}/sshd.pid\nSubsystem sftp internal-sftp\n")
    Path("/run/sshd").mkdir(exist_ok=True)
    proc = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", str(d / "sshd_config")],
                            stdout=subprocess.DEVNULL, stderr=open(d / "sshd.log", "w"))
    try:
        _wait_port(SSHD_ADDRESS, SSHD_PORT, 10)
        yield {"connection": "ssh", "ssh_host": SSHD_ADDRESS, "ssh_port": SSHD_PORT,
               "ssh_private_key": str(d / "client_key"), "ssh_known_hosts": str(d / "known_hosts")}
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="session")
def itest_stack_file(tmp_path_factory: pytest.TempPathFactory, sshd: dict) -> Path:
    path = tmp_path_factory.mktemp("stack") / "itest.yaml"
    path.write_text(yaml.safe_dump(throwaway_stack("itest", ITEST_NET, sshd), sort_keys=False))
    return path


@pytest.fixture(scope="session")
def deploy_record() -> dict:
    """Numbers the deploy fixture measured (cold deploy time, changes), for tests to report."""
    return {}


@pytest.fixture(scope="session")
def ssh_host_name() -> str:
    """The host of the throwaway stack that Ansible reaches over SSH."""
    return SSH_HOST


@pytest.fixture(scope="session")
def deployed_stack(itest_stack_file: Path, deploy_record: dict) -> Iterator[Topology]:
    """Deploy the throwaway stack once per session; destroy it at the end."""
    from infra.targets.local_lifecycle import deploy, destroy

    topology = load_stack(itest_stack_file)
    destroy(topology)  # whatever an earlier, killed run left behind
    started = time.monotonic()
    result = deploy(topology, progress=lambda m: None)
    deploy_record.update(cold_s=time.monotonic() - started, changed=result.playbook.changed,
                         healthy=result.healthy)
    assert result.healthy, {k: v for k, v in result.health.items() if not v.ok}
    yield topology
    still = destroy(topology)
    assert not still, f"still listening after destroy: {still}"

