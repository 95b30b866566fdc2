"""Fixtures for the GameDay unit tests: no stack, no root, no network beyond loopback."""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

import pytest

from gameday.rollback_log import read_rollback_log
from infra.topology import Topology, load_stack


@pytest.fixture
def topology(tmp_path: Path) -> Topology:
    """The lab stack's topology with its state directory in tmp."""
    return dataclasses.replace(load_stack("lab"), state_dir=tmp_path / "state")


@pytest.fixture
def log_at_write(monkeypatch, topology):
    """Spy on `module.write_like`: the list it returns gets the rollback log's first entry
    (as on disk) at each write, then the write happens."""

    def spy_on(module) -> list:
        seen = []
        real = module.write_like

        def spy(path, text):
            seen.append(read_rollback_log(topology.state_dir).entries[0])
            real(path, text)

        monkeypatch.setattr(module, "write_like", spy)
        return seen

    return spy_on


@pytest.fixture
def write_scenario(tmp_path: Path):
    """Write a scenario file (dedented) into a fresh directory; returns its path."""
    directory = tmp_path / "scenarios"
    directory.mkdir()

    def write(name: str, text: str) -> Path:
        path = directory / f"{name}.yaml"
        path.write_text(textwrap.dedent(text).lstrip())
        return path

    return write


GOOD_SCENARIO = """
id: {id}
title: Redis down
hypothesis: The app degrades gracefully.
steady_state:
  probes:
    - name: health
      http: {{service: nginx, path: /civicpulse/health/}}
      tolerance: {{status: [200]}}
load:
  users: 5
fault:
  kind: service_stop
  target: {{service: redis}}
  duration_s: 10
alerts:
  - {{name: RedisDown, deadline_s: 15}}
runbook: {{}}
recovery: {{deadline_s: 30}}
"""


@pytest.fixture
def good_scenario_text() -> str:
    return GOOD_SCENARIO
