"""promtool and amtool accept what we render, and every promtool unit test passes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from infra.ansible_run import ansible_env
from infra.inventory import stack_vars
from infra.topology import STACKS_DIR, load_stack
from monitoring import render, validate

LAB = load_stack("lab")

pytestmark = pytest.mark.skipif(
    not Path(validate.PROMTOOL).is_file() or not Path(validate.AMTOOL).is_file(),
    reason="promtool/amtool not installed (apt install prometheus prometheus-alertmanager)")


@pytest.fixture(scope="module")
def lab_render(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("lab")
    render.write_rendered(LAB, out)
    return out


def _assert_ok(result: validate.ToolResult) -> None:
    assert result.ok, f"{' '.join(result.argv)} failed:\n{result.output}"


def test_promtool_check_config(lab_render):
    result = validate.run_tool("config", [validate.PROMTOOL, "check", "config",
                                          str(lab_render / "prometheus/prometheus.yml")])
    _assert_ok(result)
    # The config's rules/*.yml glob found the rendered rule files and checked them too.
    assert "SUCCESS: 9 rule files found" in result.output


def test_promtool_check_rules(lab_render):
    rules = sorted(str(p) for p in (lab_render / "prometheus/rules").glob("*.yml"))
    _assert_ok(validate.run_tool("rules", [validate.PROMTOOL, "check", "rules", *rules]))


def test_promtool_rule_unit_tests(lab_render):
    tests = lab_render / "prometheus/tests"
    result = validate.run_tool("tests", [validate.PROMTOOL, "test", "rules",
                                         *sorted(p.name for p in tests.glob("*.yml"))],
                               cwd=tests)
    _assert_ok(result)
    assert "FAILED" not in result.output


def test_amtool_check_config(lab_render):
    result = validate.run_tool("alertmanager", [validate.AMTOOL, "check-config",
                                                str(lab_render / "alertmanager/alertmanager.yml")])
    _assert_ok(result)


def test_every_shipped_stack_renders_valid_config_rules_and_alertmanager(tmp_path):
    # infra/stacks/prod.yaml: 15 s scrapes, for 60s, other Alertmanager timings.
    stacks = sorted(STACKS_DIR.glob("*.yaml"))
    assert len(stacks) >= 2
    for stack in stacks:
        out = tmp_path / stack.stem
        render.write_rendered(load_stack(stack), out)
        results = validate.check_rendered(out, unit_tests=False)
        assert [r.what for r in results] == ["prometheus.yml", "rule files", "alertmanager.yml"]
        for result in results:
            _assert_ok(result)


@pytest.mark.slow
def test_ansible_renders_the_same_bytes(tmp_path):
    """The roles use ansible.builtin.template; the tests above check monitoring.render's
    output, so both must agree to the byte (delimiters override, trim_blocks, newlines)."""
    sources = [render.PROMETHEUS_DIR / "prometheus.yml.j2",
               render.PROMETHEUS_DIR / "rules" / "redis.yml.j2",
               render.PROMETHEUS_DIR / "rules" / "slo-app.yml.j2",
               render.ALERTMANAGER_DIR / "alertmanager.yml.j2"]
    out = tmp_path / "ansible"
    playbook = tmp_path / "render.yml"
    playbook.write_text(yaml.safe_dump([{
        "name": "Render monitoring templates", "hosts": "localhost", "gather_facts": False,
        "tasks": [{"name": "Render", "ansible.builtin.template": {
            "src": "{{ item }}", "dest": f"{out}/{{{{ item | basename }}}}"},
            "loop": [str(s) for s in sources]}],
    }]), encoding="utf-8")
    variables = tmp_path / "vars.json"
    variables.write_text(json.dumps(stack_vars(LAB)), encoding="utf-8")
    out.mkdir()
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-c", "local", "-i",
         "localhost,", str(playbook), "-e", f"@{variables}",
         "-e", "ansible_python_interpreter=/usr/bin/python3"],
        env=ansible_env(tmp_path / "work"), capture_output=True, text=True, timeout=300,
        check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    context = render.template_context(LAB)
    for source in sources:
        rendered = (out / source.name).read_text(encoding="utf-8")
        assert rendered == render.render_template(source, context), source
