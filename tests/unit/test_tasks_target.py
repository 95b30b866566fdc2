"""tasks.py's choice of target: --target overrides the stack config's, and a name that
is neither local nor docker is refused before anything is touched."""

from __future__ import annotations

import copy
import importlib.util

import pytest
import yaml
from invoke import Context, Exit

from infra.topology import REPO_ROOT, stack_path
from tests.stacks import docker_lab


def load_tasks():  # noqa: ANN201
    spec = importlib.util.spec_from_file_location("tasks_under_test", REPO_ROOT / "tasks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def stack_file(tmp_path):
    data = copy.deepcopy(yaml.safe_load(stack_path("lab").read_text()))
    data["state_dir"] = str(tmp_path / "state")
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "keep").write_text("data of the stack")
    path = tmp_path / "lab.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("task", ["destroy", "status"])
def test_an_unknown_target_is_refused_not_taken_for_local(task, stack_file):
    tasks = load_tasks()
    options = {"yes": True} if task == "destroy" else {}
    with pytest.raises(Exit) as caught:
        getattr(tasks, task)(Context(), stack=str(stack_file), target="dockr", **options)
    assert caught.value.code == 2
    assert "--target must be local or docker, not 'dockr'" in str(caught.value.message)
    assert (stack_file.parent / "state" / "keep").exists()  # nothing was destroyed


def test_test_stages_are_chosen_by_name_and_an_unknown_one_changes_nothing(monkeypatch):
    tasks = load_tasks()
    ran: list[str] = []
    monkeypatch.setattr(tasks, "lint", lambda c: ran.append("lint"))

    class FakeContext(Context):
        def run(self, command: str, **_kwargs):  # noqa: ANN202
            ran.append(command.split("-m ", 1)[1].split(" --junitxml")[0])

            class Result:
                exited = 0
            return Result()

    with pytest.raises(Exit) as caught:
        tasks.test(FakeContext(), stage=["unit", "dockr"])
    assert caught.value.code == 2 and "dockr" in str(caught.value) and ran == []
    tasks.test(FakeContext(), stage=["docker", "lint"])
    assert ran == ["lint", "docker"]
    ran.clear()
    tasks.test(FakeContext(), fast=True)
    assert ran == ["lint", "'not slow and not deploy'"]


def test_preview_lists_the_programs_resources_without_a_cli(capsys):
    tasks = load_tasks()
    with pytest.raises(Exit) as refused:
        tasks.preview(Context())  # lab keeps backups, which Docker does not run yet
    assert refused.value.code == 2 and "hosts.backup: pgbackrest" in str(refused.value)
    tasks.preview(Context(), stack=str(docker_lab().source))
    err = capsys.readouterr().err
    assert "Pulumi program under mocks" in err
    assert "publishes 127.0.10.10:8080" in err and "cp-lab internal 172.16.10.0/24" in err
    assert "MockSecret" not in err
    with pytest.raises(Exit) as caught:
        tasks.preview(Context(), target="local")
    assert caught.value.code == 2
