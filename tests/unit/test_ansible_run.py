"""How ansible-playbook is started: Mitogen's strategies unless turned off."""

from __future__ import annotations

from pathlib import Path

import yaml

from infra.ansible_run import PLAYBOOKS, ansible_env, mitogen_strategies, strategy_args


def test_mitogen_strategies_are_used_when_installed(monkeypatch, tmp_path):
    monkeypatch.delenv("CIVICPULSE_MITOGEN", raising=False)
    strategies = mitogen_strategies()
    assert strategies is not None, "mitogen is a declared dependency; it must be importable"
    assert (strategies / "mitogen_free.py").is_file()
    assert (strategies / "mitogen_linear.py").is_file()
    assert strategy_args() == ["-e", "cp_strategy_linear=mitogen_linear",
                               "-e", "cp_strategy_free=mitogen_free"]
    assert ansible_env(tmp_path)["ANSIBLE_STRATEGY_PLUGINS"] == str(strategies)


def test_mitogen_can_be_turned_off(monkeypatch, tmp_path):
    monkeypatch.setenv("CIVICPULSE_MITOGEN", "0")
    monkeypatch.delenv("ANSIBLE_STRATEGY_PLUGINS", raising=False)
    assert mitogen_strategies() is None
    assert strategy_args() == []
    assert "ANSIBLE_STRATEGY_PLUGINS" not in ansible_env(tmp_path)


def test_site_plays_take_their_strategy_from_those_vars():
    plays = yaml.safe_load(Path(PLAYBOOKS / "site.yml").read_text())
    strategies = [play.get("strategy", "") for play in plays]
    assert "cp_strategy_linear" in strategies[0] and "'linear'" in strategies[0]
    assert all("cp_strategy_free" in s and "'free'" in s for s in strategies[1:])
