"""procfs helpers the local target relies on when it holds a crashed service down."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from infra.procfs import execed_away_from_parent


def _fake_proc(root: Path, pid: int, ppid: int, argv: list[str]) -> None:
    d = root / str(pid)
    d.mkdir(parents=True)
    (d / "stat").write_text(f"{pid} (x) S {ppid} 1 1 0")
    (d / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")


def test_a_child_still_running_its_parents_code_has_not_execed(tmp_path):
    supervisord = ["/usr/bin/python3", "/usr/bin/supervisord", "-c", "x.conf"]
    _fake_proc(tmp_path, 10, 1, supervisord)
    _fake_proc(tmp_path, 11, 10, supervisord)
    _fake_proc(tmp_path, 12, 10, ["/venv/bin/python3", "/venv/bin/gunicorn", "-c", "y"])
    assert not execed_away_from_parent(11, tmp_path)
    assert execed_away_from_parent(12, tmp_path)
    assert not execed_away_from_parent(99, tmp_path)  # gone


def test_a_real_exec_is_seen():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(5)"])
    try:
        deadline = time.monotonic() + 5
        while not execed_away_from_parent(child.pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert execed_away_from_parent(child.pid)
    finally:
        child.kill()
        child.wait()
