"""Render the monitoring templates for a stack exactly as the Ansible roles do.

The prometheus and alertmanager roles render `monitoring/**/*.j2` with Ansible's
`template` module, whose variables are the inventory's stack variables
(`infra.inventory.stack_vars`). Tests, the alert-name listing and `python -m
monitoring render` need the same output without running Ansible, so this module
renders the same files with the same context through `infra.ansible_template`, the
Ansible-compatible renderer the Docker target uses too (`trim_blocks`, and the
`#jinja2:` first-line override that the rule files use to switch Jinja's variable
delimiters to `[% %]`, leaving Prometheus' own `{{ $labels.host }}` alone).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.ansible_template import render_template
from infra.inventory import stack_vars
from infra.topology import Topology

MONITORING_DIR = Path(__file__).resolve().parent
PROMETHEUS_DIR = MONITORING_DIR / "prometheus"
ALERTMANAGER_DIR = MONITORING_DIR / "alertmanager"


@dataclass(frozen=True)
class RenderedFile:
    """One rendered template: where it came from and where it went (relative)."""

    template: Path
    relative: Path
    text: str


def template_context(topology: Topology) -> dict[str, Any]:
    """The variables a monitoring template sees: the stack variables of the inventory."""
    return stack_vars(topology)


def _templates() -> Iterator[tuple[Path, Path]]:
    """Every monitoring template and its output path relative to the render root."""
    yield PROMETHEUS_DIR / "prometheus.yml.j2", Path("prometheus/prometheus.yml")
    for rule in sorted((PROMETHEUS_DIR / "rules").glob("*.yml.j2")):
        yield rule, Path("prometheus/rules") / rule.name.removesuffix(".j2")
    for test in sorted((PROMETHEUS_DIR / "tests").glob("*.yml.j2")):
        yield test, Path("prometheus/tests") / test.name.removesuffix(".j2")
    yield ALERTMANAGER_DIR / "alertmanager.yml.j2", Path("alertmanager/alertmanager.yml")


def render_all(topology: Topology) -> list[RenderedFile]:
    """Render every template (config, rules, promtool tests, Alertmanager) in memory."""
    context = template_context(topology)
    return [RenderedFile(template=src, relative=rel, text=render_template(src, context))
            for src, rel in _templates()]


def write_rendered(topology: Topology, out_dir: Path) -> list[Path]:
    """Render everything under `out_dir` (prometheus/…, alertmanager/…); return the paths.

    The layout mirrors the deployed one, so `rule_files: [rules/*.yml]` in the
    rendered prometheus.yml and the `../rules/…` paths of the promtool tests resolve.
    """
    written = []
    for item in render_all(topology):
        target = out_dir / item.relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(item.text, encoding="utf-8")
        written.append(target)
    return written
