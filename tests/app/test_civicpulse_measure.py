"""The throughput script runs cleanly against the real stack (small, bounded run)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from civicpulse_stack import APP_DIR

SCRIPT = APP_DIR / "scripts" / "measure_post.py"


@pytest.mark.slow
def test_measure_post_runs_without_errors(server):
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--url", server.base_url, "--concurrency", "50",
         "--duration", "5", "--max-requests", "1000"],
        capture_output=True, text=True, timeout=120)
    summary = json.loads(result.stdout)
    print(json.dumps(summary))
    assert result.returncode == 0, result.stdout + result.stderr
    assert summary["errors"] == 0 and summary["created"] > 0
    assert summary["latency_ms"]["p99"] >= summary["latency_ms"]["p50"] > 0


def test_measure_post_refuses_non_loopback_target():
    # An IP literal is only parsed, never contacted: the check runs before any I/O.
    result = subprocess.run([sys.executable, str(SCRIPT), "--url", "http://192.0.2.1:80"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "non-loopback" in result.stderr
