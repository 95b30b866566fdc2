"""Report output: the chaos report's table format, ratio rows, JSON, SVGs, tool parsers."""

from __future__ import annotations

import json
import sqlite3
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from bench.bounds import BoundResult, parse_pgbench, parse_pgbench_log, parse_wrk
from bench.report import (
    format_errors,
    performance_table,
    render_markdown,
    report_table,
    write_report,
)
from bench.results import BenchResult, PointResult, combined_bound, derive_notes, ratio_rows
from bench.rows import SqliteCounter
from bench.svg import HLine, Series, line_chart


def point(config: str, n: int, ok: int, requests: int, elapsed: float = 10.0,
          users: int | None = None, audit: int | None = None, variant: str = "write",
          errors: dict | None = None, lock_errors: int | None = None,
          db_errors: dict | None = None) -> PointResult:
    users = ok if users is None else users
    return PointResult(
        config=config, variant=variant, n=n, requests=requests, ok=ok,
        errors=errors if errors is not None else (
            {"http_503": requests - ok} if requests > ok else {}),
        elapsed_s=elapsed,
        latency_ms={"mean": 50.0, "p50": 40.0, "p95": 90.0, "p99": 120.0, "max": 200.0},
        ok_latency_ms={"mean": 50.0, "p50": 40.0, "p95": 90.0, "p99": 120.0, "max": 200.0},
        acked_creates=ok, users=users, audit=users if audit is None else audit,
        client_cpu_cores=0.1, cpu_cores={"app": 1.2, "client": 0.1, "other": 0.1,
                                         "machine": 1.9},
        lock_errors=lock_errors, db_errors=db_errors or {})


def sample_result(tmp_path: Path) -> BenchResult:
    points = [
        point("stack", 1, 100, 100), point("sqlite-default", 1, 100, 100),
        point("sqlite-tuned", 1, 150, 150),
        point("stack", 20, 3000, 3000), point("sqlite-default", 20, 0, 500, lock_errors=500),
        point("sqlite-tuned", 20, 2000, 2000),
        point("sqlite-durable", 1, 90, 90), point("sqlite-durable", 20, 250, 250),
        point("stack", 1, 80, 80, variant="report-pattern"),
        point("sqlite-default", 1, 95, 95, variant="report-pattern"),
        point("stack", 20, 2500, 2500, variant="report-pattern"),
        point("sqlite-default", 20, 3, 400, variant="report-pattern", lock_errors=397,
              db_errors={"database is locked": 397}),
    ]
    bounds = [
        BoundResult("pgbench", 20, 10, True, per_s=1500.0, requests=15000,
                    latency_ms={"p50": 10.0, "p99": 30.0}, users=15000, audit=15000),
        BoundResult("wrk django-404", 50, 10, True, per_s=1000.0, requests=10000,
                    latency_ms={"p50": 40.0, "p99": 90.0}),
        BoundResult("wrk health", 50, 10, False, note="wrk not found (apt-get install wrk)"),
    ]
    return BenchResult(
        stack="lab", started_at="2026-01-01T00:00:00+00:00",
        finished_at="2026-01-01T00:01:00+00:00",
        options={"quick": True, "ns": [1, 20], "variants": ["write", "report-pattern"],
                 "duration_s": 3.0, "max_requests": 10000, "timeout_s": 20.0},
        machine={"cpus": 2, "loadavg_start": 0.4, "loadavg_end": 2.1, "other_cores_mean": 0.1,
                 "under_load": False, "client": "aiohttp"},
        configurations={"stack": "nginx → …", "sqlite-default": "…", "sqlite-tuned": "…",
                        "sqlite-durable": "…"},
        durability={"stack": {"durable": True, "why": "yes: synchronous_commit=on"},
                    "sqlite-tuned": {"durable": False, "why": "no: synchronous=NORMAL"}},
        points=points, bounds=bounds, out_dir=tmp_path / "bench-x",
        notes=derive_notes(points))


def test_performance_table_uses_the_report_columns_first():
    lines = performance_table([point("stack", 20, 600, 1000), point("stack", 1, 10, 10)], 0.999)
    assert lines[0].startswith(
        "| Concurrent Users | Success Rate | Avg Response Time | System Status |")
    # Rows sorted by N, in the report's vocabulary.
    assert lines[2].startswith("| 1 | 100% | 50 ms | Healthy |")
    assert lines[3].startswith("| 20 | 60.0% | 50 ms | Degraded | 60 |")
    assert "http_503 ×400" in lines[3]


def test_error_cell_names_lock_errors_and_rate_limits():
    p = point("sqlite-default", 5, 6, 10, errors={"http_503": 4}, lock_errors=4)
    assert format_errors(p) == "http_503 ×4 (lock errors logged ×4)"
    p = point("sqlite-default", 5, 6, 10, errors={"http_503": 4}, lock_errors=4,
              db_errors={"database is locked": 3, "database table is locked": 1})
    assert format_errors(p) == ("http_503 ×4 (database is locked ×3, database table is "
                                "locked ×1, lock errors logged ×4)")
    p = point("stack", 5, 8, 10, errors={"rate_limited_429": 2})
    assert format_errors(p) == "rate_limited_429 ×2"
    assert format_errors(point("stack", 1, 10, 10)) == "—"


def test_ratio_rows(tmp_path):
    rows = ratio_rows(sample_result(tmp_path).points)
    assert [(r["variant"], r["n"]) for r in rows] == [
        ("write", 1), ("write", 20), ("report-pattern", 1), ("report-pattern", 20)]
    assert rows[1]["stack_over_sqlite_durable"] == round(300 / 25, 3)
    assert rows[0]["stack_over_sqlite_default"] == 1.0
    assert rows[0]["stack_over_sqlite_tuned"] == round(100 / 150, 3)
    assert rows[1]["stack_over_sqlite_default"] is None  # the peer had no success at all
    assert rows[1]["stack_over_sqlite_tuned"] == 1.5
    assert rows[1]["ok_per_s"] == {"stack": 300.0, "sqlite-default": 0.0, "sqlite-tuned": 200.0,
                                   "sqlite-durable": 25.0}


MARKDOWN_REPORT_SHOWS = (
    "## Performance Under Stress — stack, write path",
    "## Performance Under Stress — sqlite-default, write path",
    "| 20 | 0% | 50 ms | Failed | 0 |",
    "lock errors logged ×500",
    # Ratio table: ∞ where the peer had nothing; fractions of the bounds.
    "| write | 20 | 300 | 0 | ∞ | 200 | 1.50× | 25 | 12× |",
    # 300 of 1500 (DB floor), of 1000 (web ceiling), of 1/(1/1500 + 1/1000) = 600.
    "| 20% | 30% | 50% |",
    "Combined bound (best floor and best ceiling): 600 creates/s.",
    "no: synchronous=NORMAL",
    "## The report's table, redone",
    "not measured", "wrk not found",
    "users == audit rows at every point",
    "![throughput](throughput.svg)",
)


def test_markdown_report(tmp_path):
    md = render_markdown(sample_result(tmp_path), 0.999)
    # All at once: one run names every fragment the report lost.
    assert [fragment for fragment in MARKDOWN_REPORT_SHOWS if fragment not in md] == []


def test_integrity_mismatch_is_flagged(tmp_path):
    result = sample_result(tmp_path)
    result.points[0] = point("stack", 1, 100, 100, users=100, audit=99)
    assert not result.stack_integrity_ok
    md = render_markdown(result, 0.999)
    assert "100 / 99 ⚠" in md and "**users != audit rows** at N = 1" in md


def test_write_report_files(tmp_path):
    result = sample_result(tmp_path)
    paths = write_report(result, 0.999)
    assert set(paths) == {"markdown", "json", "success_rate.svg", "p99_latency.svg",
                          "throughput.svg"}
    data = json.loads(paths["json"].read_text())
    assert data["schema"] == 2
    assert {p["configuration"] for p in data["points"]} == {
        "stack", "sqlite-default", "sqlite-tuned", "sqlite-durable"}
    assert data["integrity"]["users_match_audit"]["stack"] is True
    assert data["ratios"][1]["stack_over_sqlite_tuned"] == 1.5
    assert data["bounds"][0]["tool"] == "pgbench"
    assert data["combined_bound_per_s"] == 600.0
    assert data["durability"]["sqlite-tuned"]["durable"] is False
    stack20 = next(p for p in data["points"] if p["configuration"] == "stack"
                   and p["users"] == 20 and p["pattern"] == "write")
    assert stack20["ok_per_s"] == 300.0 and stack20["success_rate"] == 1.0
    # The record the issue asks for, one per configuration × pattern × N.
    assert {"configuration", "pattern", "users", "requests", "success_rate", "ok_per_s",
            "p50_ms", "p99_ms", "errors", "lock_errors", "users_rows",
            "audit_rows"} <= set(stack20)
    locked = next(p for p in data["points"] if p["configuration"] == "sqlite-default"
                  and p["users"] == 20 and p["pattern"] == "report-pattern")
    assert locked["lock_errors"] == {"responses": {"database is locked": 397},
                                     "log_lines": 397}
    assert locked["users_rows"] == locked["audit_rows"] == 3
    for name in ("success_rate.svg", "p99_latency.svg", "throughput.svg"):
        root = ET.fromstring(paths[name].read_text())
        assert root.tag.endswith("svg")
        # write on 4 configurations, the report's pattern on 2: one line each
        assert len(root.findall("{http://www.w3.org/2000/svg}polyline")) == 6


def test_report_table_sits_next_to_the_published_numbers(tmp_path):
    lines = report_table(sample_result(tmp_path), 0.999)
    assert lines[0].startswith("| Concurrent Users | Report: Success Rate |")
    # N = 1 and 20 were measured; the report's own cells come first.
    assert lines[2].startswith("| 1 | 100% | 50ms | Healthy | 100% | 50 ms | Healthy | — |")
    assert lines[3].startswith("| 20 | 0% | Timeout | Failed | 0.8% | 50 ms | Failing "
                               "| http_503 ×397 (database is locked ×397, lock errors "
                               "logged ×397) | 100% | 50 ms | Healthy | 2500 / 2500 |")
    assert len(lines) == 4


def test_combined_bound_adds_the_two_halves():
    floor = BoundResult("pgbench", 20, 10, True, per_s=4000.0)
    ceiling = BoundResult("wrk django-404", 50, 10, True, per_s=2000.0)
    assert combined_bound([floor, ceiling]) == round(1 / (1 / 4000 + 1 / 2000), 1)
    assert combined_bound([floor]) is None
    failed = BoundResult("wrk django-404", 50, 10, False)
    assert combined_bound([floor, failed]) is None


def test_server_cpu_per_request_excludes_client_and_foreign_load():
    from bench.report import server_cpu_ms_per_ok

    p = point("stack", 20, 3000, 3000)  # 300 ok/s; app 1.2 cores, client/other excluded
    assert server_cpu_ms_per_ok(p) == pytest.approx(4.0)
    assert server_cpu_ms_per_ok(point("stack", 20, 0, 10)) is None


def test_notes_follow_from_the_numbers():
    calm = [point("sqlite-default", 200, 100, 100, lock_errors=0)]
    notes = derive_notes(calm)
    assert "not the bottleneck" in notes[0]
    assert "no `database is locked`" in notes[1]
    locked = [point("sqlite-default", 20, 10, 50, lock_errors=40)]
    assert "`database is locked` 40 times" in derive_notes(locked)[1]
    report = [point("sqlite-default", 1, 10, 10, variant="report-pattern"),
              point("sqlite-default", 20, 5, 50, variant="report-pattern", lock_errors=45,
                    db_errors={"database is locked": 45}),
              point("stack", 20, 50, 50, variant="report-pattern")]
    text = " ".join(derive_notes(report))
    assert "100% at N = 1, 10% at N = 20 (success falls with N" in text
    assert "503 naming a SQLite lock error 45 times and logged one 45 times" in text
    assert "100% success with users == audit rows at every N" in text
    limited = [point("stack", 500, 90, 100, errors={"rate_limited_429": 10})]
    assert any("rate limit" in n for n in derive_notes(limited))
    capped = BoundResult("wrk django-404", 20, 10, True, per_s=2400.0, failed=46915,
                         note="46915× HTTP 429")
    assert any("caps the web ceiling" in n for n in derive_notes(calm, [capped]))


def test_svg_chart_handles_zero_and_missing_values():
    svg = line_chart("t", "x", "y", [Series("a", [(1, 0.0), (10, 5.0)], "#000"),
                                     Series("b", [], "#111", dashed=True)],
                     [1, 10], log_y=True, hlines=[HLine("floor", 7.0)])
    root = ET.fromstring(svg)
    assert len(root.findall("{http://www.w3.org/2000/svg}polyline")) == 1
    assert "floor" in svg


PGBENCH_OUT = """\
pgbench (15.14 (Debian 15.14-0+deb12u1))
transaction type: /tmp/x/user_audit.sql
scaling factor: 1
query mode: simple
number of clients: 20
number of threads: 2
maximum number of tries: 1
duration: 3 s
number of transactions actually processed: 4227
number of failed transactions: 0 (0.000%)
latency average = 14.166 ms
initial connection time = 31.552 ms
tps = 1411.842017 (without initial connection time)
"""

WRK_OUT = """\
Running 3s test @ http://127.0.10.10:8080/civicpulse/health/
  2 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   705.44ms  150.10ms   1.06s    70.00%
    Req/Sec    40.00     10.00    60.00     70.00%
  Latency Distribution
     50%  669.00ms
     75%  800.00ms
     90%  900.00ms
     99%    1.06s
  200 requests in 3.01s, 100.00KB read
  Socket errors: connect 0, read 0, write 0, timeout 2
  Non-2xx or 3xx responses: 5
Requests/sec:     66.44
Transfer/sec:     33.22KB
status 200 195
status 429 5
"""


def test_tool_output_parsers():
    assert parse_pgbench(PGBENCH_OUT) == {"processed": 4227, "failed": 0,
                                          "latency_avg_ms": 14.166, "tps": 1411.842017}
    assert parse_pgbench_log("0 1 5123 0 1700000000 1\n1 1 failed 0 1700000000 2\n") == [
        0.005123]
    wrk = parse_wrk(WRK_OUT)
    assert wrk["requests"] == 200 and wrk["duration_s"] == 3.01
    assert wrk["non2xx"] == 5 and wrk["socket_errors"] == 2
    assert wrk["statuses"] == {200: 195, 429: 5}
    assert wrk["latency_ms"] == {"p50": 669.0, "p75": 800.0, "p90": 900.0, "p99": 1060.0,
                                 "mean": 705.44}


def test_sqlite_counter_counts_users_and_their_audit_events(tmp_path):
    db = tmp_path / "db.sqlite3"
    conn = sqlite3.connect(db)
    conn.executescript("""
        CREATE TABLE civicpulse_user (id INTEGER PRIMARY KEY, username TEXT UNIQUE);
        CREATE TABLE civicpulse_audit_event (id INTEGER PRIMARY KEY, action TEXT,
                                             target_id INTEGER);
        INSERT INTO civicpulse_user VALUES (1, 'old.1'), (2, 'b1.sw5.0.0'), (3, 'b1.sw5.0.1'),
                                           (4, 'b1.sw50.0.0'), (5, 'bXsw5.0.2');
        INSERT INTO civicpulse_audit_event (action, target_id) VALUES
            ('user.created', 2), ('user.created', 4), ('other', 3);
    """)
    conn.commit()
    conn.close()
    counter = SqliteCounter(db)
    assert counter.max_user_id() == 5
    # '.' is literal in LIKE: bXsw5 does not match b1.sw5; the audit for 3 is not user.created.
    assert counter.counts("b1.sw5.", 0) == (2, 1)
    assert counter.counts("b1.sw5.", 2) == (1, 0)
