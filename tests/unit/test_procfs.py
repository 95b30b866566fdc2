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


def _fake_stat(root: Path, pid: int, ppid: int, state: str, comm: str, cpu_ticks: int) -> None:
    d = root / str(pid)
    d.mkdir(parents=True)
    # Fields after comm: state ppid ... utime(14) stime cutime cstime, 1-based as in proc(5).
    rest = [state, str(ppid)] + ["0"] * 9 + [str(cpu_ticks), "0", str(cpu_ticks), "0"]
    (d / "stat").write_text(f"{pid} ({comm}) {' '.join(rest)} 20 0 1 0\n")


def test_one_table_serves_process_trees_and_cpu_trees(tmp_path):
    # The ops CLI's tree, the local target's descendants and the benchmark's CPU
    # accounting used to parse /proc three times; they must agree on who is below whom.
    from infra.procfs import TICK, cpu_table, descendants, stopped, tree, tree_cpu_s

    _fake_stat(tmp_path, 10, 1, "S", "post (master)", 1)
    _fake_stat(tmp_path, 12, 10, "T", "postgres", 2)
    _fake_stat(tmp_path, 11, 10, "S", "postgres", 4)
    _fake_stat(tmp_path, 13, 12, "R", "postgres", 8)
    _fake_stat(tmp_path, 20, 1, "S", "stranger", 16)
    for pid in (10, 11, 12):
        (tmp_path / str(pid) / "cmdline").write_bytes(b"postgres\0-D\0/data\0")
    (tmp_path / "13" / "cmdline").write_bytes(b"")  # a zombie: its comm stands in
    assert descendants(10, tmp_path) == [10, 11, 12, 13]
    listed = tree(10, tmp_path)
    assert [p.pid for p in listed] == [10, 11, 12, 13]
    assert listed[0].comm == "post (master)" and listed[0].command == "postgres -D /data"
    assert listed[3].command == "postgres"
    assert stopped([10, 11, 12, 13, 99], tmp_path) == [12]
    table = cpu_table(tmp_path)
    assert table[13] == (12, 16 / TICK)
    assert tree_cpu_s([10], table) == (2 + 4 + 8 + 16) / TICK
