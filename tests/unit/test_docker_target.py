"""`invoke deploy|destroy --target docker`: prerequisites, workspace, readiness (no engine)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from infra.docker import prerequisites
from infra.docker.workspace import ensure_passphrase, plugin_versions, workspace_settings
from infra.targets import docker_lifecycle
from infra.targets.base import PrerequisiteMissing, ProgressSink
from infra.targets.docker_lifecycle import (
    DockerTargetError,
    deploy_docker,
    destroy_docker,
    wait_for_app,
    write_secret_files,
)
from infra.topology import REPO_ROOT, load_stack, stack_path
from tests.stacks import without_backups


@pytest.fixture
def topology(tmp_path):
    data = without_backups(yaml.safe_load(stack_path("lab").read_text()))
    data["state_dir"] = str(tmp_path / "state")
    path = tmp_path / "lab.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_stack(path)


@pytest.fixture
def nothing_installed(monkeypatch, tmp_path):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(prerequisites, "DOCKER_SOCKET", tmp_path / "no-docker.sock")
    monkeypatch.delenv("DOCKER_HOST", raising=False)


@pytest.mark.parametrize("action", [deploy_docker, destroy_docker])
def test_missing_cli_and_engine_say_what_and_how_and_exit_non_zero(action, topology,
                                                                   nothing_installed):
    with pytest.raises(DockerTargetError) as caught:
        action(topology, ProgressSink())
    error = caught.value
    # tasks.py turns it into exit code 3 (test_invoke_task_exits_with_the_message_…).
    assert isinstance(error, PrerequisiteMissing)
    message = str(error)
    assert "nothing was changed" in message
    assert "the Pulumi CLI (`pulumi`) is not on PATH" in message
    assert "https://get.pulumi.com" in message
    assert "no Docker engine at unix://" in message and "does not exist" in message
    assert "docs.docker.com/engine/install" in message
    assert not (topology.state_dir / "pulumi").exists()  # nothing touched


def test_docker_info_failure_is_reported(monkeypatch, tmp_path):
    sock = tmp_path / "docker.sock"
    monkeypatch.setenv("DOCKER_HOST", f"unix://{sock}")
    import socket

    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(sock))
    server.listen(1)
    try:
        monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}")
        calls = []

        def fake_run(argv, **kwargs):
            calls.append(argv)
            return subprocess.CompletedProcess(argv, 1, "", "permission denied while trying "
                                                            "to connect\n")

        problems = prerequisites.prerequisite_problems(run=fake_run)
    finally:
        server.close()
    assert calls == [["docker", "info", "--format", "{{.ServerVersion}}"]]
    assert problems == [f"`docker info` failed (permission denied while trying to connect): "
                        f"{prerequisites.INSTALL_DOCKER}"]


@pytest.mark.skipif(shutil.which("pulumi") is not None or Path("/var/run/docker.sock").exists(),
                    reason="this machine has the Pulumi CLI or Docker: the task would deploy")
def test_invoke_task_exits_with_the_message_and_no_traceback():
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"}
    result = subprocess.run([str(Path(sys.executable).parent / "invoke"), "deploy", "--target",
                             "docker"], cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=60, env=env, check=False)
    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert "the Pulumi CLI (`pulumi`) is not on PATH" in result.stderr


def test_passphrase_is_generated_once_private_and_reused(topology):
    first = ensure_passphrase(topology)
    path = topology.state_dir / "secrets" / "pulumi_passphrase"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert len(first) >= 32 and ensure_passphrase(topology) == first


def test_workspace_uses_a_file_backend_in_the_state_dir(topology):
    ws = workspace_settings(topology)
    backend = topology.state_dir / "pulumi"
    assert ws.backend_url == f"file://{backend}"
    assert ws.project_settings.backend.url == ws.backend_url
    assert ws.project_settings.name == "civicpulse"
    assert ws.env_vars["PULUMI_CONFIG_PASSPHRASE"] == ensure_passphrase(topology)
    assert ws.env_vars["PULUMI_HOME"].startswith(str(topology.state_dir))
    assert backend.is_dir()


def test_plugins_match_the_installed_sdks():
    versions = plugin_versions()
    assert set(versions) == {"docker", "random"}
    assert all(v.startswith("v") and v.count(".") == 2 for v in versions.values())


def test_generated_secrets_land_where_probes_read_them(topology):
    from infra.paths import secrets_dir
    from infra.secrets import read_secret

    paths = write_secret_files(topology, {"redis": "abc", "app_db": "def"})
    assert read_secret(secrets_dir(topology), "redis") == "abc"
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in paths)


def test_wait_for_app_polls_the_published_nginx_url(topology):
    seen = []
    answers = iter([httpx.ConnectError("refused"), httpx.Response(502), httpx.Response(200)])

    def get(url, timeout):
        seen.append(url)
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    url = wait_for_app(topology, 30, get=get, sleep=lambda s: None)
    assert url == "http://127.0.10.10:8080/civicpulse/health/"
    assert seen == [url] * 3


def test_wait_for_app_gives_up_with_what_to_look_at(topology):
    clock = iter(range(0, 1000, 10))
    with pytest.raises(DockerTargetError, match=r"did not answer 200 within 20s \(last: HTTP "
                                                r"503\).*docker ps --filter label="
                                                r"civicpulse.stack=lab"):
        wait_for_app(topology, 20, get=lambda url, timeout: httpx.Response(503),
                     sleep=lambda s: None, clock=lambda: next(clock))


def test_status_reads_dockers_health_checks(topology):
    states = {
        "cp-lab-db-postgresql": {"Status": "running", "Health": {"Status": "healthy"}},
        "cp-lab-cache-redis": {"Status": "running", "Health": {"Status": "unhealthy"}},
        "cp-lab-cache-redis_exporter": {"Status": "running"},
        "cp-lab-edge-nginx": {"Status": "exited", "Health": {"Status": "unhealthy"}},
    }

    def fake_run(argv, **kwargs):
        name = argv[-1]
        if name not in states:
            return subprocess.CompletedProcess(argv, 1, "", f"No such object: {name}")
        return subprocess.CompletedProcess(argv, 0, json.dumps(states[name]), "")

    report = docker_lifecycle.status_docker(topology, run=fake_run)
    rows = {(r["host"], r["service"]): r for r in report["services"]}
    assert len(rows) == len(topology.services) + 2  # + Grafana and the notification log
    assert rows[("db", "postgresql")]["healthy"] is True
    assert rows[("db", "postgresql")]["address"] == "db:5432"
    assert rows[("cache", "redis")]["healthy"] is False
    assert rows[("cache", "redis_exporter")]["healthy"] is True  # no check: running is all
    assert rows[("edge", "nginx")]["state"] == "EXITED"
    assert rows[("app1", "app")]["state"] == "ABSENT"
    assert report["endpoints"]["app"] == "http://127.0.10.10:8080/"
