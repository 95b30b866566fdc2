"""config_push: the broken file is journaled (original text) before it is
written, the reload is asked for, rollback/cleanup restore and reload, the sweep
repairs a marked file without a log."""

from __future__ import annotations

import asyncio
import os

import pytest
import yaml
from gameday_fakes import FakeTarget, make_fault

from gameday.cleanup import cleanup
from gameday.faults import config_file, config_push
from gameday.rollback_log import INTENT, rollback_log_path

ORIGINAL = "global:\n  scrape_interval: 1s\nalerting:\n  alertmanagers: []\n"


@pytest.fixture
def reloads(monkeypatch):
    """Reload requests by service name; Prometheus refuses while the file is broken."""
    calls = []

    def reload(svc, timeout_s=10):
        calls.append(svc.name)
        text = config_push.config_path(reload.topology, svc).read_text()
        return 500 if config_push.MARKER in text else 200

    monkeypatch.setattr(config_push, "reload", reload)
    return calls, reload


@pytest.fixture
def files(topology, reloads):
    reloads[1].topology = topology
    paths = {}
    for name in config_push.CONFIG_FILES:
        path = config_push.config_path(topology, topology.one(name))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(ORIGINAL)
        os.chmod(path, 0o640)
        paths[name] = path
    return paths


def make(topology, service, **params):
    return make_fault(topology, "config_push", service, duration=60, **params)


def test_broken_and_repaired_are_inverse():
    assert config_push.repaired(config_push.broken(ORIGINAL)) == ORIGINAL
    twice = config_push.broken(config_push.broken(ORIGINAL))
    assert config_push.repaired(twice) == ORIGINAL
    assert config_push.MARKER in config_push.broken(ORIGINAL)


@pytest.mark.parametrize("service", ["prometheus", "alertmanager"])
def test_the_original_is_journaled_first_and_restored_with_a_reload(
        topology, files, reloads, log_at_write, service):
    calls, _ = reloads
    fault, rollback_log = make(topology, service)
    seen = log_at_write(config_file)
    asyncio.run(fault.inject())
    assert seen[0].state == INTENT and seen[0].undo["content"] == ORIGINAL
    assert config_push.MARKER in files[service].read_text()
    assert oct(files[service].stat().st_mode & 0o777) == "0o640"
    assert calls == [service]

    asyncio.run(fault.rollback())
    assert files[service].read_text() == ORIGINAL and calls == [service, service]
    assert fault.fully_rolled_back and rollback_log.finish()


def test_an_already_broken_file_is_refused_untouched(topology, files):
    files["prometheus"].write_text(config_push.broken(ORIGINAL))
    fault, rollback_log = make(topology, "prometheus")
    with pytest.raises(RuntimeError, match="already changed by a GameDay"):
        asyncio.run(fault.inject())
    assert rollback_log.entries == []


def test_only_prometheus_and_alertmanager_with_their_files(topology, files):
    fault, _ = make(topology, "redis")
    assert "targets prometheus or alertmanager, not redis" in fault.preflight()[0]
    files["alertmanager"].unlink()
    fault, _ = make(topology, "alertmanager")
    assert "does not exist" in fault.preflight()[0]


def test_cleanup_restores_what_a_killed_run_left_then_the_sweep_finds_nothing(
        topology, files, reloads):
    calls, _ = reloads
    fault, _ = make(topology, "alertmanager")
    asyncio.run(fault.inject())  # then SIGKILL
    report = cleanup(topology, FakeTarget(topology), check_health=False)
    assert files["alertmanager"].read_text() == ORIGINAL
    assert any("alertmanager.yml restored, alertmanager reloaded" in a for a in report.actions)
    assert not any("repaired" in a for a in report.actions)
    assert not rollback_log_path(topology.state_dir).exists()


def test_the_sweep_repairs_a_marked_file_without_a_log(topology, files, reloads):
    calls, _ = reloads
    files["prometheus"].write_text(config_push.broken(ORIGINAL))
    report = cleanup(topology, FakeTarget(topology), check_health=False)
    assert files["prometheus"].read_text() == ORIGINAL
    assert "sweep: prometheus.yml of prometheus@monitor repaired, reload HTTP 200" in \
        report.actions
    assert calls == ["prometheus"]


REAL_ALERTING = """global:
  scrape_interval: 1s
alerting:
  alertmanagers:
    - static_configs:
        - targets:
            - 127.0.10.50:9093
scrape_configs: []
"""


def test_no_alertmanagers_keeps_everything_else_and_reloads_fine(topology, files, reloads):
    calls, _ = reloads
    files["prometheus"].write_text(REAL_ALERTING)
    fault, rollback_log = make(topology, "prometheus", change="no_alertmanagers")
    asyncio.run(fault.inject())
    text = files["prometheus"].read_text()
    assert text.startswith(config_push.NO_ALERTMANAGERS_MARKER)
    pushed = yaml.safe_load(text)
    assert pushed["alerting"] == {"alertmanagers": []}
    assert pushed["global"] == {"scrape_interval": "1s"} and pushed["scrape_configs"] == []
    assert rollback_log.entries[0].undo["content"] == REAL_ALERTING
    asyncio.run(fault.rollback())
    assert files["prometheus"].read_text() == REAL_ALERTING and calls == ["prometheus"] * 2


def test_no_alertmanagers_is_for_prometheus_and_the_sweep_cannot_guess_the_original(
        topology, files):
    fault, _ = make(topology, "alertmanager", change="no_alertmanagers")
    assert "applies to prometheus, not alertmanager" in fault.preflight()[0]
    files["prometheus"].write_text(config_push.without_alertmanagers(REAL_ALERTING))
    report = cleanup(topology, FakeTarget(topology), check_health=False)
    assert any("lists no Alertmanager" in p and "invoke deploy --stack lab" in p
               for p in report.problems)
