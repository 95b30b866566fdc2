"""Run ansible-playbook for a stack and follow its progress.

We drive the real `ansible-playbook` CLI (not ansible-runner) because it is what an
SRE would run by hand, and its output is kept verbatim in the stack's log. Progress
comes from the TASK/PLAY lines of the default callback; the totals from PLAY RECAP.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from infra.topology import REPO_ROOT

PLAYBOOKS = REPO_ROOT / "playbooks"
_RECAP = re.compile(
    r"^(?P<host>\S+)\s+:\s+ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+"
    r"unreachable=(?P<unreachable>\d+)\s+failed=(?P<failed>\d+)"
)
_TASK = re.compile(r"^(TASK|RUNNING HANDLER) \[(?P<name>.*)\]")
_PLAY = re.compile(r"^PLAY \[(?P<name>.*)\]")


@dataclass
class PlaybookResult:
    returncode: int
    recap: dict[str, dict[str, int]] = field(default_factory=dict)
    log: Path | None = None
    failures: list[str] = field(default_factory=list)

    @property
    def changed(self) -> int:
        return sum(h["changed"] for h in self.recap.values())

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and all(
            h["failed"] == 0 and h["unreachable"] == 0 for h in self.recap.values()
        )


def mitogen_strategies() -> Path | None:
    """Mitogen's strategy plugins, or None when not installed or CIVICPULSE_MITOGEN=0.

    Why: stock Ansible starts a fresh Python per task and host (~0.2 CPU-s each), and a
    re-deploy runs ~190 of them: 74 CPU-s, 42 s on two cores. Mitogen keeps one
    interpreter per host and reuses it (measured: 26 CPU-s, 25 s). It is a drop-in
    strategy, so the playbooks stay plain Ansible and run without it too.
    """
    if os.environ.get("CIVICPULSE_MITOGEN", "1") == "0":
        return None
    try:
        import ansible_mitogen
    except ImportError:
        return None
    return Path(ansible_mitogen.__file__).parent / "plugins" / "strategy"


def strategy_args() -> list[str]:
    """Extra vars picking the plays' strategies (site.yml templates its `strategy:`)."""
    if mitogen_strategies() is None:
        return []
    return ["-e", "cp_strategy_linear=mitogen_linear", "-e", "cp_strategy_free=mitogen_free"]


def ansible_env(work_dir: Path) -> dict[str, str]:
    """Environment that keeps Ansible out of the user's home and the checkout."""
    env = dict(os.environ)
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    env["ANSIBLE_CONFIG"] = str(PLAYBOOKS / "ansible.cfg")
    env["ANSIBLE_HOME"] = str(work_dir / "ansible")
    env["ANSIBLE_LOCAL_TEMP"] = str(work_dir / "ansible" / "tmp")
    env["ANSIBLE_REMOTE_TEMP"] = "/tmp/.ansible-civicpulse"
    env["ANSIBLE_NOCOLOR"] = "1"
    env["ANSIBLE_FORCE_COLOR"] = "0"
    env["PYTHONUNBUFFERED"] = "1"
    if (strategies := mitogen_strategies()) is not None:
        env["ANSIBLE_STRATEGY_PLUGINS"] = str(strategies)
    return env


def run_playbook(
    inventory: Path,
    work_dir: Path,
    playbook: str = "site.yml",
    extra_args: list[str] | None = None,
    on_line: Callable[[str, str], None] | None = None,
) -> PlaybookResult:
    """Run a playbook; `on_line(kind, text)` hears about plays and tasks as they start."""
    work_dir.mkdir(parents=True, exist_ok=True)
    log = work_dir / "ansible.log"
    cmd = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inventory),
           str(PLAYBOOKS / playbook), *strategy_args(), *(extra_args or [])]
    result = PlaybookResult(returncode=-1, log=log)
    in_recap = False
    with open(log, "w", encoding="utf-8") as fh, subprocess.Popen(
        cmd, cwd=PLAYBOOKS, env=ansible_env(work_dir), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL,
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            fh.write(line)
            text = line.rstrip("\n")
            if text.startswith("PLAY RECAP"):
                in_recap = True
                continue
            if in_recap and (m := _RECAP.match(text)):
                result.recap[m["host"]] = {k: int(v) for k, v in m.groupdict().items()
                                           if k != "host"}
                continue
            if text.startswith(("fatal:", "failed:")) or "FAILED!" in text:
                result.failures.append(text)
            if on_line is None:
                continue
            if m := _PLAY.match(text):
                on_line("play", m["name"])
            elif m := _TASK.match(text):
                on_line("task", m["name"])
        result.returncode = proc.wait()
    return result
