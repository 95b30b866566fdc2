"""The benchmark's pure logic: arguments, percentiles, outcome kinds, ratios, status."""

from __future__ import annotations

import aiohttp
import pytest

from bench.cpu_meter import CpuMeter
from bench.load import classify_exception, require_loopback
from bench.options import FULL_NS, QUICK_NS, BenchError, make_options, parse_ns
from bench.rows import like_prefix
from bench.stats import (
    RATE_LIMITED,
    classify_status,
    format_rate,
    format_ratio,
    latency_summary_ms,
    percentile,
    system_status,
)
from infra.procfs import parse_stat_cpu, tree_cpu_s

# --- arguments -------------------------------------------------------------------------


def test_defaults_full_and_quick():
    full = make_options()
    assert full.ns == FULL_NS == (1, 5, 10, 20, 50, 100, 200, 500, 1000)
    assert full.variants == ("write", "report-pattern", "read-mix") and full.duration_s == 10
    assert all(full.ns_for(v) == FULL_NS for v in full.variants)
    quick = make_options(quick=True)
    assert quick.ns == QUICK_NS == (1, 20, 200)
    assert quick.variants == ("write", "report-pattern") and quick.duration_s == 3
    # CI's quick run measures the report's pattern where the report failed (1 and 20).
    assert quick.ns_for("write") == QUICK_NS and quick.ns_for("report-pattern") == (1, 20)
    assert quick.max_requests >= 1 and quick.timeout_s > 0


def test_ns_parsing_sorts_and_accepts_lists():
    assert parse_ns("20, 1,5") == (1, 5, 20)
    assert parse_ns([200, 1]) == (1, 200)
    assert parse_ns(None) is None
    assert make_options(ns="5,1").ns == (1, 5)


@pytest.mark.parametrize(("ns", "message"), [
    ("", "not a comma-separated list"),
    ("1,,5", "not a comma-separated list"),
    ("1,x", "'x' is not an integer"),
    ("1.5", "'1.5' is not an integer"),
    ("0,5", "between 1 and 1000; got 0"),
    ("-3", "between 1 and 1000; got -3"),
    ("1,5000", "got 5000"),
    ("5,5", "5 listed more than once"),
    ([], "empty"),
    ([1, True], "True is not an integer"),
])
def test_bad_ns_lists_are_refused_clearly(ns, message):
    with pytest.raises(BenchError, match=message) as exc:
        make_options(ns=ns)
    assert "--ns" in str(exc.value)


@pytest.mark.parametrize("duration", [0, -1, -0.5, 301])
def test_bad_durations_are_refused(duration):
    with pytest.raises(BenchError, match="--duration: must be > 0"):
        make_options(duration_s=duration)


def test_other_bad_arguments():
    with pytest.raises(BenchError, match="--duration: 'x' is not a number"):
        make_options(duration_s="x")  # type: ignore[arg-type]
    with pytest.raises(BenchError, match="--patterns: .*got bogus"):
        make_options(variants=["write", "bogus"])
    with pytest.raises(BenchError, match="--max-requests"):
        make_options(max_requests=0)
    with pytest.raises(BenchError, match="--timeout"):
        make_options(timeout_s=-1)


# --- percentiles and summaries ----------------------------------------------------------


def test_percentile_nearest_rank():
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert percentile(values, 50) == 50
    assert percentile(values, 95) == 95
    assert percentile(values, 99) == 99
    assert percentile(values, 100) == 100
    assert percentile([7.0], 99) == 7.0
    assert percentile([1.0, 2.0], 50) == 1.0
    assert percentile([1.0, 2.0], 51) == 2.0  # a latency some request really had
    assert percentile([], 99) is None
    with pytest.raises(ValueError):
        percentile(values, 0)


def test_latency_summary_in_ms():
    summary = latency_summary_ms([0.010, 0.020, 0.030, 0.040])
    assert summary == {"mean": 25.0, "p50": 20.0, "p95": 40.0, "p99": 40.0, "max": 40.0}
    assert latency_summary_ms([]) == {"mean": None, "p50": None, "p95": None, "p99": None,
                                      "max": None}


# --- outcome classification -------------------------------------------------------------


def test_status_classification():
    assert classify_status(201, 201) == "ok"
    assert classify_status(200, 201) == "http_200"  # a create must answer 201
    assert classify_status(429, 201) == RATE_LIMITED == "rate_limited_429"
    assert classify_status(503, 201) == "http_503"
    assert classify_status(504, 200) == "http_504"


def test_exception_classification():
    assert classify_exception(TimeoutError()) == "timeout"
    assert classify_exception(aiohttp.ServerTimeoutError()) == "timeout"
    assert classify_exception(aiohttp.ServerDisconnectedError()) == "disconnected"
    assert classify_exception(ConnectionResetError()) == "disconnected"
    assert classify_exception(aiohttp.ClientPayloadError()) == "bad_response"
    assert classify_exception(ValueError()) == "client_error:ValueError"


def test_only_loopback_targets():
    require_loopback("http://127.0.10.10:8080")
    require_loopback("http://[::1]:8000/")
    for url in ("http://10.0.0.1:80", "http://example.org", "https://127.0.0.1", "ftp://x"):
        with pytest.raises(ValueError):
            require_loopback(url)


# --- report vocabulary and ratios -------------------------------------------------------


# The chaos report: 100 % Healthy, 60 % Degraded, 20 % Failing, 0 % Failed.
@pytest.mark.parametrize(("ok", "total", "status"), [
    (100, 100, "Healthy"), (60, 100, "Degraded"), (20, 100, "Failing"), (0, 100, "Failed"),
    (0, 0, "Failed"),
    (998, 1000, "Degraded"),  # below the SLO
])
def test_system_status_matches_the_report(ok, total, status):
    assert system_status(ok, total, 0.999) == status


@pytest.mark.parametrize(("ok", "total", "shown"), [
    (10, 10, "100%"), (9999, 10000, "99.9%"), (6, 10, "60.0%"), (0, 10, "0%"),
    (1, 10000, "<0.1%"), (0, 0, "n/a"),
])
def test_rate_format_never_rounds_up_to_100(ok, total, shown):
    assert format_rate(ok, total) == shown


@pytest.mark.parametrize(("value", "base", "shown"), [
    (300, 100, "3.00×"), (50, 100, "0.50×"), (1500, 100, "15×"), (100, 0, "∞"), (0, 0, "—"),
])
def test_ratio_format(value, base, shown):
    assert format_ratio(value, base) == shown


# --- CPU accounting and row counting helpers --------------------------------------------


def test_stat_parsing_and_process_trees():
    rest = "S 1 10 10 0 -1 4194560 0 0 0 0 300 100 50 50 20 0 1 0".split()
    ppid, cpu = parse_stat_cpu(rest)
    assert ppid == 1
    assert cpu == pytest.approx(500 / __import__("os").sysconf("SC_CLK_TCK"))
    table = {10: (1, 1.0), 11: (10, 2.0), 12: (11, 4.0), 20: (1, 8.0)}
    assert tree_cpu_s([10], table) == 7.0
    assert tree_cpu_s([10, 20], table) == 15.0
    assert tree_cpu_s([99], table) == 0.0


def test_cpu_cores_and_other():
    before = {"app": 10.0, "postgresql": 5.0, "machine": 100.0}
    after = {"app": 12.0, "postgresql": 6.0, "machine": 107.0}
    cores = CpuMeter.cores(before, after, 2.0, {"client": 0.4})
    assert cores == {"app": 1.0, "postgresql": 0.5, "client": 0.2, "other": 1.8,
                     "machine": 3.5}
    assert CpuMeter.cores(before, after, 0) == {}


def test_cpu_meter_reads_this_process():
    import os

    meter = CpuMeter({"tree": [os.getpid()], "empty": []}, {"alone": [os.getpid()]})
    assert set(meter.groups) == {"tree"}  # empty groups are dropped
    sum(i * i for i in range(300_000))  # burn a little CPU
    snap = meter.snapshot()
    assert snap["tree"] >= snap["alone"] > 0 and snap["machine"] > 0


def test_like_prefix_refuses_wildcards():
    assert like_prefix("babc.sw20.") == "babc.sw20.%"
    for bad in ("a_b", "a%", "a\\b"):
        with pytest.raises(ValueError):
            like_prefix(bad)


# --- run_bench refuses before any load ---------------------------------------------------


def test_run_bench_validates_arguments_before_touching_anything(tmp_path):
    from bench import run_bench
    from infra.topology import load_stack

    with pytest.raises(BenchError, match="--ns"):
        run_bench(load_stack("lab"), ns="1,0", out_dir=tmp_path / "out")
    with pytest.raises(BenchError, match="--duration"):
        run_bench(load_stack("lab"), duration_s=-1, out_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_run_bench_needs_a_running_stack(tmp_path):
    import yaml

    from bench import run_bench
    from infra.topology import load_stack, stack_path

    # The lab stack's shape on addresses where nothing listens.
    data = yaml.safe_load(stack_path("lab").read_text())
    data["stack"] = "nostack"
    for host in data["hosts"].values():
        host["address"] = "127.0.98." + host["address"].rsplit(".", 1)[1]
    path = tmp_path / "nostack.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(BenchError, match="not reachable.*invoke status --stack nostack"):
        run_bench(load_stack(path), quick=True, out_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()
