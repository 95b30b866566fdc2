"""Every role that imports a helper role (`supervised`, `volume`) passes what its spec asks.

The callers skip Ansible's run-time check (`rolespec_validate: false`, a task per
program on every deploy), so this test is where a missing or misspelt argument of
`playbooks/roles/<helper>/meta/argument_specs.yml` is caught.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROLES = Path(__file__).resolve().parents[2] / "playbooks" / "roles"
HELPERS = ("supervised", "volume")
OPTIONS = {name: yaml.safe_load((ROLES / name / "meta" / "argument_specs.yml").read_text())
           ["argument_specs"]["main"]["options"] for name in HELPERS}
TYPES = {"str": str, "int": int, "dict": dict, "path": str}


def _callers() -> list[tuple[str, str, dict]]:
    found = []
    for path in sorted(ROLES.glob("*/tasks/*.yml")):
        for task in yaml.safe_load(path.read_text()) or []:
            target = (task.get("ansible.builtin.import_role")
                      or task.get("ansible.builtin.include_role") or {})
            if target.get("name") in HELPERS:
                found.append((target["name"], f"{path.relative_to(ROLES)}: {task['name']}",
                              task))
    return found


CALLERS = _callers()


def test_every_service_role_is_a_caller():
    roles = {where.split("/")[0] for helper, where, _ in CALLERS if helper == "supervised"}
    assert roles == {"alertmanager", "app", "exporters", "nginx", "pgbackrest", "pgbouncer",
                     "postgresql", "prometheus", "redis"}


def test_every_volume_is_a_caller():
    assert {where.split("/")[0] for helper, where, _ in CALLERS if helper == "volume"} == {
        "postgresql", "pgbackrest"}


@pytest.mark.parametrize(("helper", "where", "task"), CALLERS,
                         ids=[w for _, w, _ in CALLERS])
def test_caller_arguments_match_the_spec(helper, where, task):
    target = task.get("ansible.builtin.import_role") or task.get("ansible.builtin.include_role")
    assert target.get("rolespec_validate") is False, f"{where}: validate here or in the spec"
    args = task.get("vars") or {}
    options = OPTIONS[helper]
    unknown = set(args) - set(options)
    assert not unknown, f"{where}: not in the {helper} spec: {sorted(unknown)}"
    missing = {k for k, o in options.items() if o.get("required")} - set(args)
    assert not missing, f"{where}: missing {sorted(missing)}"
    for key, value in args.items():
        option = options[key]
        if isinstance(value, str) and "{{" in value:
            continue  # templated: its type is only known at run time
        assert isinstance(value, TYPES[option["type"]]), f"{where}: {key}={value!r}"
        if "choices" in option:
            assert value in option["choices"], f"{where}: {key}={value!r}"
