"""Every role gets, from the generated inventory, the arguments its spec asks for.

Their arguments all come from infra/inventory.py, so this test checks them against
each role's `meta/argument_specs.yml` with Ansible's own validator for every
checked-in stack, before any deploy does (where Ansible checks them again).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from infra.inventory import build_inventory
from infra.topology import STACKS_DIR, load_stack

ROLES = Path(__file__).resolve().parents[2] / "playbooks" / "roles"
STACKS = sorted(p.stem for p in STACKS_DIR.glob("*.yaml"))


def _spec(role: str) -> dict | None:
    path = ROLES / role / "meta" / "argument_specs.yml"
    if not path.exists():
        return None
    return yaml.safe_load(path.read_text())["argument_specs"]["main"]["options"]


def _problems(stack: str) -> list[str]:
    inventory = build_inventory(load_stack(stack))["all"]
    problems = []
    for host, host_vars in inventory["hosts"].items():
        variables = {**inventory["vars"], **host_vars}
        for role in ["supervisor", *host_vars["cp_roles"]]:
            spec = _spec(role)
            if spec is None:
                continue
            wanted = {k: v for k, v in variables.items() if k in spec}
            result = ArgumentSpecValidator(spec).validate(wanted)
            problems += [f"{stack}/{host}/{role}: {msg}" for msg in result.error_messages]
    return problems


@pytest.mark.parametrize("stack", STACKS)
def test_every_role_of_every_host_gets_valid_arguments(stack):
    assert _problems(stack) == []


def test_a_missing_argument_is_caught(monkeypatch):
    import infra.inventory as inventory

    real = inventory.host_vars

    def without_redis_port(topology, host):
        hv = real(topology, host)
        hv.pop("redis_port", None)
        return hv

    monkeypatch.setattr(inventory, "host_vars", without_redis_port)
    assert any("redis_port" in p for p in _problems("lab"))


def test_site_yml_includes_every_role_in_order_and_leaves_validation_here():
    from infra.inventory import ROLE_ORDER

    site = yaml.safe_load((ROLES.parent / "site.yml").read_text())
    includes = [task["ansible.builtin.include_role"] for play in site
                for task in play.get("tasks", []) if "ansible.builtin.include_role" in task]
    assert [i["name"] for i in includes] == list(ROLE_ORDER)
    assert all(i.get("rolespec_validate") is False for i in includes)
