"""SQLite peers: the deployed app is required; peers left by a killed run are reaped."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from bench import peers
from bench.options import BenchError
from infra.topology import load_stack


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_reap_only_peers_of_dead_runs(tmp_path, monkeypatch):
    monkeypatch.setattr(peers, "WORK_ROOT", tmp_path)
    stale = tmp_path / f"{peers.WORK_PREFIX}stale"
    stale.mkdir()
    sleeper = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(30)"], start_new_session=True,
        env={**os.environ, "CIVICPULSE_CONFIG": f"{stale}/config.json"})
    (stale / "owner.pid").write_text(f"{_dead_pid()} {sleeper.pid}\n")

    live = tmp_path / f"{peers.WORK_PREFIX}live"
    live.mkdir()
    (live / "owner.pid").write_text(f"{os.getpid()} {sleeper.pid}\n")

    # A recorded pid that now belongs to something else is never signalled.
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"],
                             start_new_session=True)
    reused = tmp_path / f"{peers.WORK_PREFIX}reused"
    reused.mkdir()
    (reused / "owner.pid").write_text(f"{_dead_pid()} {other.pid}\n")
    try:
        reaped = peers.reap_stale_peers()
        assert sorted(reaped) == sorted([stale, reused])
        assert sleeper.wait(5) != 0          # SIGTERMed
        assert other.poll() is None          # untouched
        assert live.exists() and not stale.exists() and not reused.exists()
    finally:
        for proc in (sleeper, other):
            proc.kill()
            proc.wait()


def test_deployed_app_is_required(tmp_path):
    import yaml

    from infra.topology import stack_path

    data = yaml.safe_load(stack_path("lab").read_text())
    data["stack"] = "notdeployed"
    data["state_dir"] = str(tmp_path / "state")
    path = tmp_path / "notdeployed.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(BenchError, match="invoke deploy --stack notdeployed"):
        peers.deployed_app(load_stack(path))


def test_peer_config_matches_the_stack_sizing(tmp_path):
    app = peers.DeployedApp(venv=tmp_path, src=tmp_path, log_level="INFO", workers=4,
                            worker_class="sync", threads=1, timeout_s=30, hosts=2)
    default = peers.SqlitePeer("sqlite-default", peers.SQLITE_MODES["sqlite-default"],
                               "127.0.60.1", app, workdir=tmp_path, port=8123)
    config = default._config()
    # Django's defaults: no PRAGMA of ours, SQLite's own synchronous=FULL applies.
    assert config["database"] == {"engine": "sqlite", "path": str(tmp_path / "db.sqlite3"),
                                  "sqlite_tuned": False}
    assert config["gunicorn"]["workers"] == 4 and config["gunicorn"]["bind"].endswith(":8123")
    assert config["redis"] is None and config["log_level"] == "INFO"
    # Every peer serves the report's pattern: it is the benchmark's own deployment.
    assert config["report_pattern"] is True
    assert "Django defaults" in default.describe()
    tuned = peers.SqlitePeer("sqlite-tuned", peers.SQLITE_MODES["sqlite-tuned"], "127.0.60.2",
                             app, workdir=tmp_path)
    assert tuned._config()["database"]["sqlite_tuned"] is True
    assert tuned._config()["database"]["sqlite_synchronous"] == "NORMAL"
    assert "WAL" in tuned.describe() and "synchronous=NORMAL" in tuned.describe()
    durable = peers.SqlitePeer("sqlite-durable", peers.SQLITE_MODES["sqlite-durable"],
                               "127.0.60.3", app, workdir=tmp_path)
    assert durable._config()["database"]["sqlite_synchronous"] == "FULL"


def test_only_the_unsynced_wal_peer_is_called_not_durable():
    durable = {name: mode.durable for name, mode in peers.SQLITE_MODES.items()}
    assert durable == {"sqlite-default": True, "sqlite-tuned": False, "sqlite-durable": True}
    assert "power loss" in peers.SQLITE_MODES["sqlite-tuned"].durability
