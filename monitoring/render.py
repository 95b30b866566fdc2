"""Render the monitoring templates for a stack exactly as the Ansible roles do.

The prometheus and alertmanager roles render `monitoring/**/*.j2` with Ansible's
`template` module, whose variables are the inventory's stack variables
(`infra.inventory.stack_vars`). Tests, the alert-name listing and `python -m
monitoring render` need the same output without running Ansible, so this module
renders the same files with plain Jinja2, the same context and the same settings
Ansible uses (`trim_blocks`, and the `#jinja2:` first-line override that the rule
files use to switch Jinja's variable delimiters to `[% %]`, leaving Prometheus'
own `{{ $labels.host }}` alone). Templates therefore use only core Jinja filters.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from infra.inventory import stack_vars
from infra.topology import Topology

MONITORING_DIR = Path(__file__).resolve().parent
PROMETHEUS_DIR = MONITORING_DIR / "prometheus"
ALERTMANAGER_DIR = MONITORING_DIR / "alertmanager"

#: Ansible's `#jinja2:` override line: `#jinja2:key:'value', key:'value'`.
_OVERRIDE_PREFIX = "#jinja2:"
_OVERRIDE_KEYS = frozenset({
    "block_start_string", "block_end_string", "variable_start_string",
    "variable_end_string", "comment_start_string", "comment_end_string", "trim_blocks",
    "lstrip_blocks", "keep_trailing_newline",
})


@dataclass(frozen=True)
class RenderedFile:
    """One rendered template: where it came from and where it went (relative)."""

    template: Path
    relative: Path
    text: str


def template_context(topology: Topology) -> dict[str, Any]:
    """The variables a monitoring template sees: the stack variables of the inventory."""
    return stack_vars(topology)


def split_overrides(text: str, source: Path) -> tuple[str, dict[str, Any]]:
    """Strip an Ansible `#jinja2:` first line and return its environment overrides."""
    if not text.startswith(_OVERRIDE_PREFIX):
        return text, {}
    eol = text.find("\n")
    if eol == -1:
        raise ValueError(f"{source}:1: the #jinja2: override line needs a newline after it")
    overrides: dict[str, Any] = {}
    for pair in text[len(_OVERRIDE_PREFIX):eol].split(","):
        key, sep, value = pair.partition(":")
        key = key.strip()
        if not sep or key not in _OVERRIDE_KEYS:
            raise ValueError(f"{source}:1: bad #jinja2: override {pair.strip()!r} (Ansible "
                             f"accepts {', '.join(sorted(_OVERRIDE_KEYS))})")
        overrides[key] = ast.literal_eval(value.strip())
    return text[eol + 1:], overrides


def render_template(path: Path, context: dict[str, Any]) -> str:
    """Render one template file the way `ansible.builtin.template` does."""
    text, overrides = split_overrides(path.read_text(encoding="utf-8"), path)
    # Ansible's defaults: trim_blocks on, lstrip_blocks off, trailing newline kept.
    settings: dict[str, Any] = {"trim_blocks": True, "keep_trailing_newline": True}
    settings.update(overrides)
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(path.parent)),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        **settings,
    )
    try:
        return env.from_string(text).render(**context)
    except jinja2.TemplateError as exc:
        line = getattr(exc, "lineno", None)
        where = f"{path}:{line + (1 if overrides else 0)}" if line else str(path)
        raise ValueError(f"{where}: {exc}") from exc


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
