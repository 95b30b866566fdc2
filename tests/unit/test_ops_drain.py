"""Draining app hosts: the recorded set, the safety checks, and how it reaches nginx."""

from __future__ import annotations

import dataclasses
import json

import pytest

from infra.ansible_run import PlaybookResult
from infra.drained import drained_hosts, write_drained
from infra.health import Health
from infra.ops import drain
from infra.ops.outcome import OpsError
from infra.paths import drained_path, host_dir
from infra.topology import load_stack


@pytest.fixture
def topology(tmp_path):
    return dataclasses.replace(load_stack("lab"), state_dir=tmp_path / "state")


class FakeAnsible:
    """Stands in for run_playbook: records the call and renders the upstream like the
    nginx role's template does (a drained host is `down`)."""

    def __init__(self, topology, ok=True):
        self.topology, self.ok, self.calls = topology, ok, []

    def __call__(self, inventory, work_dir, extra_args=None, **_kw):
        self.calls.append((inventory, work_dir, list(extra_args or [])))
        extra = json.loads(extra_args[extra_args.index("--extra-vars") + 1])
        if self.ok:
            write_nginx_conf(self.topology, extra["nginx_drained_hosts"])
        return PlaybookResult(returncode=0 if self.ok else 2,
                              recap={"edge": {"ok": 3, "changed": 1, "unreachable": 0,
                                              "failed": 0 if self.ok else 1}},
                              failures=[] if self.ok else ["fatal: [edge]: nginx -t failed"])


def write_nginx_conf(topology, drained):
    conf = host_dir(topology, "edge") / "nginx" / "nginx.conf"
    conf.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"        server {s.endpoint} max_fails=2 fail_timeout=5s"
             f"{' down' if s.host in drained else ''};  # {s.host}"
             for s in topology.instances("app")]
    conf.write_text("upstream app {\n" + "\n".join(lines) + "\n}\n")


@pytest.fixture
def healthy(monkeypatch):
    state = {"app1": True, "app2": True}
    monkeypatch.setattr(drain, "probe", lambda _t, svc: Health(state[svc.host], "probe"))
    return state


def test_drained_file_roundtrip_ignores_hosts_that_are_gone(topology):
    assert drained_hosts(topology) == []
    write_drained(topology, ["app2", "app1", "app2"])
    assert json.loads(drained_path(topology).read_text()) == {"drained": ["app1", "app2"]}
    write_drained(topology, ["app1", "app7", "db"])
    assert drained_hosts(topology) == ["app1"]
    drained_path(topology).write_text("{not json")
    with pytest.raises(ValueError, match="unreadable drained-hosts file"):
        drained_hosts(topology)


def test_drain_applies_through_the_nginx_role_and_records(topology, healthy):
    write_nginx_conf(topology, [])
    ansible = FakeAnsible(topology)
    outcome = drain.drain(topology, "app1", runner=ansible)
    assert outcome.ok, outcome.notes
    (inventory, work_dir, args), = ansible.calls
    assert inventory == topology.state_dir / "ops" / "inventory.yml" and inventory.is_file()
    assert work_dir == topology.state_dir / "ops" / "ansible"
    assert args[:4] == ["--limit", "edge", "--skip-tags", "install,run"]
    assert json.loads(args[5]) == {"nginx_drained_hosts": ["app1"]}
    assert drained_hosts(topology) == ["app1"]
    assert outcome.records() == [
        {"host": "app1", "recorded": "drained", "nginx upstream": "down", "app health": "ok"},
        {"host": "app2", "recorded": "in service", "nginx upstream": "serving",
         "app health": "ok"}]
    drain.undrain(topology, "app1", runner=ansible)
    assert drained_hosts(topology) == []
    assert json.loads(ansible.calls[-1][2][5]) == {"nginx_drained_hosts": []}


def test_drain_refuses_to_take_the_last_healthy_host(topology, healthy):
    healthy["app2"] = False
    ansible = FakeAnsible(topology)
    with pytest.raises(OpsError, match="would leave no healthy app host"):
        drain.drain(topology, "app1", runner=ansible)
    assert ansible.calls == [] and drained_hosts(topology) == []
    drain.drain(topology, "app1", force=True, runner=ansible)
    assert drained_hosts(topology) == ["app1"]


def test_undrain_refuses_an_unhealthy_host(topology, healthy):
    write_drained(topology, ["app1"])
    healthy["app1"] = False
    with pytest.raises(OpsError, match="fails its health probe: undraining it sends users"):
        drain.undrain(topology, "app1", runner=FakeAnsible(topology))
    assert drained_hosts(topology) == ["app1"]


def test_failed_ansible_records_nothing(topology, healthy):
    with pytest.raises(OpsError, match="Ansible failed .*nginx -t failed.*Nothing was recorded"):
        drain.drain(topology, "app1", runner=FakeAnsible(topology, ok=False))
    assert drained_hosts(topology) == []


@pytest.mark.parametrize(("host", "message"), [
    ("app9", "stack lab has no host 'app9'; its hosts are: edge, app1"),
    ("db", "host db runs no app server; app hosts of stack lab: app1, app2"),
])
def test_drain_names_the_valid_hosts(topology, healthy, host, message):
    with pytest.raises(OpsError, match=message):
        drain.drain(topology, host, runner=FakeAnsible(topology))


def test_report_flags_a_redeploy_that_undid_the_drain(topology, healthy):
    write_drained(topology, ["app2"])
    write_nginx_conf(topology, [])
    outcome = drain.report(topology)
    assert not outcome.ok
    assert "app2: drained.json and the deployed nginx.conf disagree" in outcome.notes[0]


def test_report_without_a_deployed_nginx(topology, healthy):
    with pytest.raises(OpsError, match="nginx.conf .*is the stack deployed"):
        drain.report(topology)
