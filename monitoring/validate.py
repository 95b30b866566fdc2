"""Check rendered monitoring files with the real tools: promtool and amtool.

The roles validate each file with these same tools before it lands on a host
(`validate:` of the template module); this runs them all at once on a render for
a stack, for the tests and for `python -m monitoring check`.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from infra.topology import Topology, load_stack
from monitoring.render import write_rendered

PROMTOOL = "/usr/bin/promtool"
AMTOOL = "/usr/bin/amtool"
#: The stack whose profile the promtool unit tests are written for.
LAB_STACK = "lab"


@dataclass(frozen=True)
class ToolResult:
    what: str
    argv: tuple[str, ...]
    returncode: int
    output: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def tool_path(name: str) -> str:
    """The Debian binary if present, else whatever PATH has (e.g. a CI image)."""
    default = {"promtool": PROMTOOL, "amtool": AMTOOL}[name]
    if Path(default).is_file():
        return default
    found = shutil.which(name)
    if found is None:
        package = "prometheus" if name == "promtool" else "prometheus-alertmanager"
        raise FileNotFoundError(f"{name} is not installed (Debian: apt install {package})")
    return found


def run_tool(what: str, argv: list[str], cwd: Path | None = None) -> ToolResult:
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=120,
                          check=False)
    return ToolResult(what=what, argv=tuple(argv), returncode=proc.returncode,
                      output=(proc.stdout + proc.stderr).strip())


def check_rendered(out_dir: Path, unit_tests: bool = True) -> list[ToolResult]:
    """promtool check config/rules, promtool test rules, amtool check-config."""
    prometheus = out_dir / "prometheus"
    promtool, amtool = tool_path("promtool"), tool_path("amtool")
    rules = sorted(str(p) for p in (prometheus / "rules").glob("*.yml"))
    results = [
        run_tool("prometheus.yml", [promtool, "check", "config",
                                    str(prometheus / "prometheus.yml")]),
        run_tool("rule files", [promtool, "check", "rules", *rules]),
        run_tool("alertmanager.yml", [amtool, "check-config",
                                      str(out_dir / "alertmanager" / "alertmanager.yml")]),
    ]
    if unit_tests:
        tests = sorted(p.name for p in (prometheus / "tests").glob("*.yml"))
        # From the tests directory: their rule_files are relative to it.
        results.append(run_tool("rule unit tests", [promtool, "test", "rules", *tests],
                                cwd=prometheus / "tests"))
    return results


def check_stack(topology: Topology, out_dir: Path) -> list[ToolResult]:
    """Render everything for `topology` under `out_dir` and check it.

    The promtool unit tests state times and windows of the lab profile (1 s scrapes,
    `for: 2s`; a crash repaired within a second must fire there and must not page in
    production), so they run against the lab stack's render whatever `topology` is.
    """
    write_rendered(topology, out_dir)
    if topology.monitoring.profile == "lab":
        return check_rendered(out_dir)
    results = check_rendered(out_dir, unit_tests=False)
    lab_dir = out_dir / "lab-unit-tests"
    write_rendered(load_stack(LAB_STACK), lab_dir)
    tests = lab_dir / "prometheus" / "tests"
    results.append(run_tool("rule unit tests (lab stack)",
                            [tool_path("promtool"), "test", "rules",
                             *sorted(p.name for p in tests.glob("*.yml"))], cwd=tests))
    return results
