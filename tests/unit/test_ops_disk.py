"""`disk`: what it reports and, above all, what --clean may delete."""

from __future__ import annotations

import dataclasses

import pytest

from infra.ops import disk
from infra.topology import load_stack


@pytest.fixture
def topology(tmp_path):
    topo = dataclasses.replace(load_stack("lab"), state_dir=tmp_path / "state")
    hosts = topo.state_dir / "hosts"
    for rel, size in {"db/log/postgresql.log": 10, "db/log/postgresql.log.1": 2000,
                      "app1/log/app.log.2": 3000, "app1/log/app.log": 5,
                      "edge/nginx/access.log": 4000, "edge/nginx/nginx.conf": 10,
                      "db/postgresql/data/PG_VERSION": 3,
                      "db/postgresql/data/pg_wal/000000010000000000000001": 8192,
                      "db/log/notes.log.txt": 7}.items():
        path = hosts / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * size)
    return topo


def test_clean_deletes_only_rotated_logs_and_balloons(topology, tmp_path, monkeypatch):
    volume = tmp_path / "volume"
    volume.mkdir()
    (volume / disk.BALLOON).write_bytes(b"\0" * 5000)
    (volume / "important").write_text("keep")
    monkeypatch.setattr(disk, "stack_mounts", lambda _t: [volume])
    hosts = topology.state_dir / "hosts"
    outcome = disk.disk(topology, clean=True)
    assert outcome.ok
    deleted = {r["path"] for r in outcome.records() if r["what"] == "deleted"}
    assert deleted == {str(hosts / "db/log/postgresql.log.1"), str(hosts / "app1/log/app.log.2"),
                       str(volume / disk.BALLOON)}
    for kept in ("db/log/postgresql.log", "app1/log/app.log", "edge/nginx/access.log",
                 "db/postgresql/data/pg_wal/000000010000000000000001", "db/log/notes.log.txt"):
        assert (hosts / kept).exists(), kept
    assert (volume / "important").exists()
    assert (hosts / "edge/nginx/access.log").stat().st_size == 4000


def test_access_log_is_truncated_only_when_asked(topology, monkeypatch):
    monkeypatch.setattr(disk, "stack_mounts", lambda _t: [])
    access = topology.state_dir / "hosts/edge/nginx/access.log"
    disk.disk(topology, clean=True)
    assert access.stat().st_size == 4000
    outcome = disk.disk(topology, clean=True, truncate_access_log=True)
    assert access.exists() and access.stat().st_size == 0
    assert any(r["what"] == "truncated" for r in outcome.records())


def test_min_free_pct_is_the_verdict(topology, monkeypatch, tmp_path):
    monkeypatch.setattr(disk, "stack_mounts", lambda _t: [tmp_path])
    monkeypatch.setattr(disk, "filesystem",
                        lambda m: disk.Filesystem(mount=m, size=1000 * disk.MiB,
                                                  free=50 * disk.MiB))
    assert disk.disk(topology).ok
    outcome = disk.disk(topology, min_free_pct=10)
    assert not outcome.ok and "has 5.0% free, below 10%" in outcome.notes[-1]
    assert disk.disk(topology, min_free_pct=4).ok


def test_report_lists_the_biggest_directories(topology):
    outcome = disk.disk(topology, top=2)
    largest = [r["path"] for r in outcome.records() if r["what"] == "largest"]
    assert len(largest) == 2
    assert largest[0].endswith("db/postgresql") or largest[0].endswith("db/log")


def test_undeployed_stack(tmp_path):
    topo = dataclasses.replace(load_stack("lab"), state_dir=tmp_path / "none")
    outcome = disk.disk(topo)
    assert not outcome.ok and "does not exist" in outcome.notes[0]


def test_mounts_inside_the_state_dir_are_found(topology, monkeypatch):
    inner = topology.state_dir / "hosts" / "db" / "postgresql" / "data"
    real_ismount = disk.os.path.ismount
    monkeypatch.setattr(disk.os.path, "ismount",
                        lambda p: str(p) == str(inner) or real_ismount(p))
    assert inner in disk.stack_mounts(topology)
