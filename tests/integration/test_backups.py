"""Backups on the deployed throwaway stack: pgBackRest's repository on the backup host,
WAL archived from the database host, the schedule's metrics in Prometheus, and the
`invoke backup` / `invoke backups` tasks."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import httpx
import pytest

from infra.backups import BackupError, repository, take_backup
from infra.targets import target_for
from infra.topology import REPO_ROOT

pytestmark = [pytest.mark.slow, pytest.mark.deploy]


def test_deploy_took_the_first_full_backup(deployed_stack):
    repo = repository(deployed_stack, target_for(deployed_stack))
    assert repo.status_code == 0, repo.status
    full = [b for b in repo.backups if b.type == "full"]
    assert full and full[0].database_bytes > 0 and full[0].repo_bytes > 0
    print(f"first full backup: {full[0].duration_s:.0f}s, {full[0].repo_bytes} bytes "
          f"in the repository for a {full[0].database_bytes}-byte cluster")


def test_an_acknowledged_write_reaches_the_archive_within_archive_timeout(deployed_stack):
    target = target_for(deployed_stack)
    before = repository(deployed_stack, target).wal_max
    resp = httpx.post(deployed_stack.url("nginx", "/api/users/"),
                      json={"username": f"archived-{time.time_ns()}", "email": "a@example.org"},
                      timeout=5)
    assert resp.status_code == 201
    acked = time.monotonic()
    bound = deployed_stack.sizing.pgbackrest.archive_timeout_s + 10
    while (now := repository(deployed_stack, target).wal_max) == before:
        assert time.monotonic() - acked < bound, f"WAL still at {before} after {bound}s"
        time.sleep(0.5)
    print(f"write archived (WAL {before} -> {now}) {time.monotonic() - acked:.1f}s after "
          f"its acknowledgement; archive_timeout "
          f"{deployed_stack.sizing.pgbackrest.archive_timeout_s}s")


def test_invoke_backup_adds_an_incremental_and_backups_lists_it(deployed_stack):
    taken, elapsed = take_backup(deployed_stack, target_for(deployed_stack), "incr")
    assert taken.type == "incr" and taken.prior is not None
    print(f"incremental backup: {elapsed:.1f}s, {taken.repo_bytes} bytes added")
    out = subprocess.run([sys.executable, "-m", "invoke", "backups", "--stack",
                          str(deployed_stack.source), "--json"], cwd=REPO_ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    labels = [b["label"] for b in json.loads(out.stdout)["backups"]]
    assert taken.label in labels


def test_a_bad_backup_type_is_refused_and_changes_nothing(deployed_stack):
    target = target_for(deployed_stack)
    before = repository(deployed_stack, target).backups
    with pytest.raises(BackupError, match="--type weekly: not a backup type"):
        take_backup(deployed_stack, target, "weekly")
    out = subprocess.run([sys.executable, "-m", "invoke", "backup", "--stack",
                          str(deployed_stack.source), "--type", "weekly"], cwd=REPO_ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "--type weekly" in out.stderr
    assert repository(deployed_stack, target).backups == before


def test_prometheus_scrapes_the_schedules_view_of_the_repository(deployed_stack):
    # The schedule rewrites its textfile every poll; Prometheus scrapes pgbackrest_exporter.
    deadline = time.monotonic() + 60
    query = deployed_stack.url("prometheus", "/api/v1/query")
    while True:
        result = httpx.get(query, params={"query": 'pgbackrest_backups{type="full"}'},
                           timeout=5).json()["data"]["result"]
        if result and float(result[0]["value"][1]) >= 1:
            break
        assert time.monotonic() < deadline, result
        time.sleep(1)
    assert result[0]["metric"]["host"] == deployed_stack.one("pgbackrest").host


def test_prometheus_sees_wal_archiving_succeed(deployed_stack):
    # postgres_exporter's pg_archiver query: segments archived, none failed.
    query = deployed_stack.url("prometheus", "/api/v1/query")
    deadline = time.monotonic() + 60
    while True:
        data = httpx.get(query, params={"query": "pg_archiver_archived_count"},
                         timeout=5).json()["data"]["result"]
        if data and float(data[0]["value"][1]) > 0:
            break
        assert time.monotonic() < deadline, data
        time.sleep(1)
    failed = httpx.get(query, params={"query": "pg_archiver_failed_count"},
                       timeout=5).json()["data"]["result"]
    assert failed and failed[0]["metric"]["host"] == deployed_stack.one("postgresql").host
