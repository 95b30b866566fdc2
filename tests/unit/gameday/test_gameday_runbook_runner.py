"""The runbook runner: executable fenced blocks, timeouts, retries, missing files."""

from __future__ import annotations

import os
import textwrap
import time

import pytest

from gameday.runbook_runner import (
    RunbookBlock,
    RunbookError,
    parse_runbook,
    run_block,
    run_runbook,
)
from infra.runbook_env import runbook_env

RUNBOOK = textwrap.dedent("""\
    # RedisDown

    ## Meaning
    Redis does not answer.

    ```sh
    echo "an example, never run"
    ```

    ## Diagnosis
    ```sh step=diagnose
    echo diagnosing "$CP_STACK"
    ```

    ## Mitigation
    ````bash step=mitigate timeout=5
    echo mitigating
    ```nested fence text stays inside
    ````

    ```sh step=verify attempts=3 interval=0.1
    echo verified
    ```
    """)


def test_parse_finds_only_step_blocks_in_order():
    blocks = parse_runbook(RUNBOOK)
    assert [(b.step, b.line) for b in blocks] == [("diagnose", 11), ("mitigate", 16),
                                                  ("verify", 21)]
    assert blocks[1].timeout_s == 5
    assert "nested fence" in blocks[1].code
    assert blocks[2].attempts == 3 and blocks[2].interval_s == 0.1


def test_parse_errors_name_the_line():
    with pytest.raises(RunbookError, match=r"rb.md:2: code block is never closed"):
        parse_runbook("x\n```sh step=diagnose\necho\n", "rb.md")
    with pytest.raises(RunbookError, match=r"rb.md:1: step=fix is not one of"):
        parse_runbook("```sh step=fix\necho\n```\n", "rb.md")


def test_run_records_output_exit_and_duration(tmp_path):
    block = RunbookBlock(step="diagnose", code="echo out; echo err >&2; exit 3", line=7)
    result = run_block(block, {"PATH": os.environ["PATH"]}, timeout_s=5, cwd=tmp_path)
    assert (result.exit_code, result.stdout, result.stderr) == (3, "out\n", "err\n")
    assert not result.ok and not result.timed_out and result.duration_s >= 0


def test_timeout_kills_the_whole_process_group(tmp_path):
    marker = tmp_path / "survived"
    block = RunbookBlock(step="mitigate", line=1,
                         code=f"(sleep 2; touch {marker}) & sleep 30")
    start = time.monotonic()
    result = run_block(block, {"PATH": os.environ["PATH"]}, timeout_s=0.5, cwd=tmp_path)
    assert result.timed_out and result.exit_code is None
    assert time.monotonic() - start < 5
    time.sleep(2.5)
    assert not marker.exists(), "the background child outlived the timeout"


def test_attempts_retry_until_success(tmp_path):
    counter = tmp_path / "n"
    block = RunbookBlock(step="verify", line=1, attempts=5, interval_s=0.05,
                         code=f"echo x >> {counter}; [ $(wc -l < {counter}) -ge 3 ]")
    result = run_block(block, {"PATH": os.environ["PATH"]}, timeout_s=5, cwd=tmp_path)
    assert result.ok and result.attempts == 3


def test_pipefail_and_unset_variables_fail_the_block(tmp_path):
    env = {"PATH": os.environ["PATH"]}
    assert run_block(RunbookBlock("diagnose", "false | true", 1), env, 5, tmp_path).exit_code
    assert run_block(RunbookBlock("diagnose", "echo $NOPE", 1), env, 5, tmp_path).exit_code


def test_run_runbook_in_step_order(tmp_path, topology):
    path = tmp_path / "RedisDown.md"
    path.write_text(RUNBOOK)
    seen = []
    result = run_runbook(path, ["verify", "diagnose"], runbook_env(topology, "RedisDown"),
                         timeout_s=5, on_step=seen.append, cwd=tmp_path)
    assert result.ok, result
    assert [r.step for r in result.results] == ["diagnose", "verify"]
    assert result.results[0].stdout == "diagnosing lab\n"
    assert len(seen) == 2


def test_failed_mitigation_skips_verify(tmp_path):
    path = tmp_path / "rb.md"
    path.write_text("```sh step=mitigate\nexit 1\n```\n```sh step=verify\necho ok\n```\n")
    result = run_runbook(path, ["diagnose", "mitigate", "verify"], {"PATH": "/usr/bin:/bin"},
                         5, cwd=tmp_path)
    assert [r.step for r in result.results] == ["mitigate"]
    assert not result.ok
    assert "no ```sh step=diagnose block" in result.problem


def test_missing_runbook_is_reported_not_raised(tmp_path):
    result = run_runbook(tmp_path / "Nope.md", ["diagnose"], {}, 5)
    assert not result.found and not result.ok
    assert "runbook not found" in result.problem


def test_env_describes_the_stack_without_secrets(topology):
    env = runbook_env(topology, "RedisDown")
    assert env["CP_ALERT_NAME"] == "RedisDown"
    assert env["CP_REDIS_ADDRESS"] == "127.0.10.41" and env["CP_REDIS_PORT"] == "6379"
    assert env["CP_REDIS_SUPERVISORCTL"].endswith("hosts/cache/supervisor/supervisord.conf")
    assert env["CP_HOST_APP1_ADDRESS"] == "127.0.10.21"
    assert "CP_APP_ADDRESS" not in env  # two app hosts: no single address
    assert env["CP_SECRETS_DIR"].endswith("/secrets")
    assert not any("password" in k.lower() for k in env)


def test_env_names_the_docker_engine_the_engine_uses_and_nothing_else(topology,
                                                                       monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "unix:///var/lib/civicpulse/x/dockerd/docker.sock")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not for runbooks")
    env = runbook_env(topology, "RedisDown")
    assert env["DOCKER_HOST"] == "unix:///var/lib/civicpulse/x/dockerd/docker.sock"
    assert "AWS_SECRET_ACCESS_KEY" not in env
    monkeypatch.delenv("DOCKER_HOST")
    assert "DOCKER_HOST" not in runbook_env(topology, "RedisDown")


def test_expect_must_match_stdout(tmp_path):
    env = {"PATH": os.environ["PATH"]}
    (good,) = parse_runbook("```sh step=verify expect=^state:\\s+ok$\necho 'state: ok'\n```\n")
    assert run_block(good, env, 5, tmp_path).ok
    (bad,) = parse_runbook("```sh step=verify expect=ok attempts=2 interval=0\necho nope\n```\n")
    result = run_block(bad, env, 5, tmp_path)
    assert result.exit_code == 0 and result.expect_matched is False and not result.ok
    assert result.attempts == 2
    with pytest.raises(RunbookError, match="bad block attribute"):
        parse_runbook("```sh step=verify expect=(\necho\n```\n")


def test_env_for_the_ops_commands(topology, tmp_path):
    import sys
    from pathlib import Path

    env = runbook_env(topology, "AppHostDown", {"alertname": "AppHostDown", "host": "app1",
                                                "service": "app"})
    assert env["CP_STACK"] == "lab"  # infra/stacks/lab.yaml: by name
    assert env["CP_ALERT_HOST"] == "app1" and env["CP_ALERT_SERVICE"] == "app"
    assert "CP_ALERT_ALERTNAME" not in env
    # `python -m infra.ops` must find the engine's interpreter (the project venv).
    assert env["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent)
    import dataclasses

    elsewhere = dataclasses.replace(topology, source=tmp_path / "mine.yaml")
    assert runbook_env(elsewhere)["CP_STACK"] == str(tmp_path / "mine.yaml")
