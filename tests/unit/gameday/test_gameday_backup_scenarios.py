"""The GameDays that need the backup repository, on stacks with and without one."""

from __future__ import annotations

import pytest

from gameday.faults.base import FaultContext
from gameday.faults.data_delete import OperatorDelete, aside_tables
from gameday.faults.data_loss import DataDirectoryLost
from gameday.rollback_log import RollbackLog
from gameday.scenario import absent_optional_services, load_catalog
from infra.topology import load_stack
from tests.stacks import docker_lab

BACKUP_SCENARIOS = ("database-volume-lost", "database-data-deleted", "backup-repository-down",
                    "backup-repository-volume-filling")


@pytest.fixture(scope="module")
def catalog():
    return load_catalog()


@pytest.mark.parametrize("scenario_id", BACKUP_SCENARIOS)
def test_the_lab_runs_every_backup_scenario(catalog, scenario_id):
    assert absent_optional_services(catalog[scenario_id], load_stack("lab")) == []


def test_a_stack_without_backups_skips_the_partition_of_its_absent_repository(catalog):
    assert absent_optional_services(catalog["backup-repository-down"], docker_lab()) == [
        "pgbackrest", "pgbackrest_pg"]
    # Scenarios on required services are never skipped this way.
    assert absent_optional_services(catalog["postgresql-crash"], docker_lab()) == []


@pytest.mark.parametrize(("fault_class", "scenario_id"), [
    (DataDirectoryLost, "database-volume-lost"), (OperatorDelete, "database-data-deleted")])
def test_data_destroying_faults_refuse_a_stack_that_keeps_no_backups(
        catalog, tmp_path, fault_class, scenario_id):
    topology = docker_lab()
    spec = catalog[scenario_id].fault
    log = RollbackLog(tmp_path, "r", topology.stack)
    problems = fault_class(spec, FaultContext(topology, None, log, scenario_id)).preflight()  # type: ignore[arg-type]
    assert any("keeps no backups" in p for p in problems), problems
    lab = load_stack("lab")
    assert fault_class(spec, FaultContext(lab, None, log, scenario_id)).preflight() == []  # type: ignore[arg-type]


def test_the_lost_volume_plan_names_what_it_moves_and_keeps(catalog, tmp_path):
    lab = load_stack("lab")
    fault = DataDirectoryLost(catalog["database-volume-lost"].fault,
                              FaultContext(lab, None, RollbackLog(tmp_path, "r", "lab"), "x"))  # type: ignore[arg-type]
    (plan,) = fault.plan()
    assert "freeze postgresql@db" in plan and "volume/data.gameday-lost" in plan


@pytest.mark.parametrize("key", ["run-1", "x; DROP TABLE civicpulse_user", "A" * 41, ""])
def test_aside_table_names_refuse_anything_but_a_plain_run_key(key):
    with pytest.raises(ValueError, match="not a run key"):
        aside_tables(key)
