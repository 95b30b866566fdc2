"""`invoke bench --quick` for real, against a freshly deployed throwaway stack."""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path

import pytest

from bench import run_bench
from bench.options import QUICK_NS
from bench.results import CONFIGURATIONS
from infra.topology import Topology

pytestmark = [pytest.mark.slow, pytest.mark.deploy]


class Lines:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def print(self, message: str) -> None:
        self.lines.append(message)


def check_quick_bench(topology: Topology, out_dir: Path) -> dict:
    console = Lines()
    result = run_bench(topology, quick=True, out_dir=out_dir, console=console)
    data = json.loads((out_dir / "results.json").read_text())

    # Every configuration at every N of the quick run: the write path at N = 1, 20,
    # 200, the report's pattern at N = 1 and 20.
    assert set(data["configurations"]) == set(CONFIGURATIONS) == set(data["durability"])
    for config in CONFIGURATIONS:
        for pattern, expected in (("write", QUICK_NS), ("report-pattern", (1, 20))):
            ns = sorted(p["users"] for p in data["points"]
                        if p["configuration"] == config and p["pattern"] == pattern)
            assert ns == list(expected), (config, pattern, ns)

    for p in data["points"]:
        assert p["requests"] > 0 and p["elapsed_s"] > 0, p
        assert p["users_rows"] == p["audit_rows"], p        # user + audit together
        assert p["users_rows"] >= p["acked_creates"], p     # every acknowledged create
        assert p["client_cpu_cores"] < 1.0, p
    stack = [p for p in data["points"] if p["configuration"] == "stack"]
    assert all(p["ok"] > 0 and p["success_rate"] >= 0.99 for p in stack), stack
    assert data["integrity"]["users_match_audit"]["stack"] is True
    assert result.stack_integrity_ok

    # The report's failure, reproduced: its pattern on its configuration at 20 users
    # fails with SQLite's lock error, named in the responses and the app's log alike.
    report20 = next(p for p in data["points"] if p["configuration"] == "sqlite-default"
                    and p["pattern"] == "report-pattern" and p["users"] == 20)
    assert report20["success_rate"] < 0.99, report20
    locked = report20["lock_errors"]["responses"].get("database is locked", 0)
    assert locked > 0 and report20["lock_errors"]["log_lines"] >= locked, report20
    assert report20["errors"]["http_503"] >= locked
    # ... and fixed: the stack runs the same pattern at 100 %.
    stack_report = [p for p in stack if p["pattern"] == "report-pattern"]
    assert all(p["success_rate"] == 1.0 for p in stack_report), stack_report
    assert data["durability"]["sqlite-tuned"]["durable"] is False
    assert data["durability"]["sqlite-durable"]["durable"] is True
    assert data["durability"]["stack"]["durable"] is True

    pgbench = [b for b in data["bounds"] if b["tool"] == "pgbench"]
    assert pgbench and pgbench[0]["ok"] and pgbench[0]["per_s"] > 0
    assert pgbench[0]["users"] == pgbench[0]["audit"] == pgbench[0]["requests"]
    assert any(b["tool"] == "wrk django-404" for b in data["bounds"])

    md = (out_dir / "report.md").read_text()
    assert "| Concurrent Users | Success Rate | Avg Response Time | System Status |" in md
    assert "## The report's table, redone" in md
    assert "## Stack ÷ SQLite" in md
    for svg in ("success_rate.svg", "p99_latency.svg", "throughput.svg"):
        assert (out_dir / svg).read_text().startswith("<svg")

    # The peers are gone: nothing listens where they did.
    for config in ("sqlite-default", "sqlite-tuned", "sqlite-durable"):
        host, port = re.search(r"http://([\d.]+):(\d+)", data["configurations"][config]).groups()
        with pytest.raises(OSError), socket.create_connection((host, int(port)), timeout=1):
            pass
    return data


def test_quick_bench_against_a_fresh_stack(deployed_stack, tmp_path):
    check_quick_bench(deployed_stack, tmp_path / "bench")
