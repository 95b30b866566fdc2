"""A GameDay smoke on the docker target: one scenario per fault family (a crashed
service, a stopped service, a dead host), through the docker driver
(infra/targets/docker.py), each with its alert, runbook, TTD, TTR and reconciliation."""

from __future__ import annotations

import pytest

from gameday.engine import run_gameday
from gameday.progress import PlainProgress
from gameday.results import HELD, verdict_line
from tests.docker_target.conftest import DockerStack, wait_all_healthy

pytestmark = [pytest.mark.slow, pytest.mark.docker]

#: A crash (SIGKILL), a stop and a host down: each goes through a different part of
#: the driver (signal, docker stop/start, the host's containers).
SMOKE = ("postgresql-crash", "redis-down", "app-host-crash")


@pytest.fixture(scope="module")
def smoke_run(docker_stack: DockerStack, tmp_path_factory):
    health = wait_all_healthy(docker_stack)
    assert all(v in ("healthy", "running") for v in health.values()), health
    reports = tmp_path_factory.mktemp("docker-gameday")
    run = run_gameday(docker_stack.topology, list(SMOKE), reports_dir=reports,
                      progress=PlainProgress())
    for r in run.results:
        print(f"docker GameDay {r.id}: {verdict_line(r)}", flush=True)
    return run


@pytest.mark.parametrize("scenario_id", SMOKE)
def test_smoke_scenario_holds_on_the_docker_target(smoke_run, scenario_id):
    r = next(x for x in smoke_run.results if x.id == scenario_id)
    failed = [f"{c.name}: expected {c.expected}, measured {c.measured}" for c in r.checks
              if not c.passed]
    assert r.status == HELD, f"{r.status}: {r.reason}; failed checks: {failed}"
    assert r.times is not None and r.times.time_to_detect is not None
    assert r.times.time_to_recover is not None
    rec = r.reconciliation
    assert rec is not None and rec.error is None and rec.acknowledged > 50
    assert rec.lost_acknowledged_writes == 0 and rec.audit_mismatches == 0
    assert r.runbook is not None and r.runbook.problem is None
