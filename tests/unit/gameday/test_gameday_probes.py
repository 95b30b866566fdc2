"""Steady-state tolerances."""

from __future__ import annotations

import math

import pytest

from gameday.probes import check_command, check_http, check_promql, promql_values
from gameday.scenario import Tolerance


def test_http_status_latency_and_json_field():
    tol = Tolerance(status=[200], max_latency_ms=500, json_field="status", json_in=["ok"])
    assert check_http(tol, 200, 20, {"status": "ok"})[0]
    ok, why = check_http(tol, 200, 20, {"status": "degraded"})
    assert not ok and "status='degraded'" in why
    ok, why = check_http(tol, 503, 900, None)
    assert not ok and "status 503" in why and "900 ms > 500 ms" in why


def test_promql_bounds_and_empty_results():
    assert check_promql(Tolerance(max=0.05), [0.01, 0.02])[0]
    assert not check_promql(Tolerance(max=0.05), [0.01, 0.2])[0]
    assert not check_promql(Tolerance(min=1), [0])[0]
    assert check_promql(Tolerance(max=0.05, if_empty="zero"), [])[0]
    assert check_promql(Tolerance(max=0.05), [])[1] == "empty result"
    assert check_promql(Tolerance(max=0.05), [math.nan])[0]  # 0/0 before any traffic


def test_command_exit_code_and_timeout():
    assert check_command(Tolerance(exit_code=0), 0, 10, False)[0]
    assert not check_command(Tolerance(exit_code=0), 1, 10, False)[0]
    assert check_command(Tolerance(exit_code=0), None, 10, True) == (False, "timed out")


def test_promql_result_types():
    vector = {"data": {"resultType": "vector", "result": [{"value": [1, "0.5"]}]}}
    assert promql_values(vector) == [0.5]
    assert promql_values({"data": {"resultType": "scalar", "result": [1, "2"]}}) == [2.0]
    with pytest.raises(ValueError):
        promql_values({"data": {"resultType": "matrix", "result": []}})
