"""The two bounds the app path sits between, measured on the same stack.

- Database floor: pgbench running the app's own transaction (BEGIN; insert user
  RETURNING id; insert audit; COMMIT: four round trips, as psycopg sends them)
  through PgBouncer. `-M simple` because PgBouncer's transaction pooling has no
  prepared statements; `-n` because there are no pgbench tables to vacuum.
- Web ceiling: wrk through nginx against (a) the health endpoint, and (b) a path no
  view matches, answered by the app's JSON 404: nginx, a Gunicorn worker and Django's
  middleware and URL resolver, and nothing else. (b) is the real ceiling: measured
  here, the health endpoint costs several times more than a create, because its
  database probe opens (and SCRAM-authenticates) a new PgBouncer connection each time.

The app path can reach at most the lower of the two; the report shows which fraction.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.stats import latency_summary_ms
from infra.connections import APP, stack_secret
from infra.topology import Topology

PGBENCH = "/usr/lib/postgresql/15/bin/pgbench"

PGBENCH_SCRIPT = """\
\\set r random(1, 9000000000000000000)
BEGIN;
INSERT INTO civicpulse_user (username, email, created_at) \
VALUES ('{prefix}' || :client_id || '.' || :r, 'pgbench.' || :r || '@example.org', now()) \
ON CONFLICT (username) DO NOTHING RETURNING id \\gset
INSERT INTO civicpulse_audit_event (action, target_id, request_id, created_at) \
VALUES ('user.created', :id, 'pgbench', now());
COMMIT;
"""


#: Counts responses by status in wrk's Lua hooks, so that 429s from nginx's rate limit
#: can never pass for throughput.
WRK_STATUS_LUA = """\
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) counts = {} end
function response(status, headers, body) counts[status] = (counts[status] or 0) + 1 end
function done(summary, latency, requests)
  local total = {}
  for _, t in ipairs(threads) do
    for k, v in pairs(t:get("counts")) do total[k] = (total[k] or 0) + v end
  end
  for k, v in pairs(total) do io.write(string.format("status %d %d\\n", k, v)) end
end
"""

#: wrk targets: name -> (path, expected status).
WRK_TARGETS = {
    "health": (None, 200),
    "django-404": ("/civicpulse/bench-ceiling-no-such-view", 404),
}


@dataclass
class BoundResult:
    tool: str
    concurrency: int
    duration_s: float
    ok: bool
    per_s: float = 0.0
    requests: int = 0
    failed: int = 0
    latency_ms: dict[str, float | None] = field(default_factory=dict)
    note: str = ""
    users: int | None = None
    audit: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def pgbench_binary() -> str | None:
    return shutil.which("pgbench") or (PGBENCH if os.access(PGBENCH, os.X_OK) else None)


def parse_pgbench(stdout: str) -> dict[str, float]:
    """Totals from pgbench's summary (PostgreSQL 15 format)."""
    patterns = {
        "processed": r"number of transactions actually processed: (\d+)",
        "failed": r"number of failed transactions: (\d+)",
        "latency_avg_ms": r"latency average = ([\d.]+) ms",
        "tps": r"tps = ([\d.]+) \(without initial connection time\)",
    }
    out = {}
    for key, pattern in patterns.items():
        match = re.search(pattern, stdout)
        if match:
            out[key] = float(match.group(1))
    return out


def parse_pgbench_log(text: str) -> list[float]:
    """Latencies (s) from a `pgbench -l` log: 'client tx time_us script epoch epoch_us'.

    Failed or skipped transactions carry a word instead of a number; they are left out
    (pgbench's summary counts them).
    """
    latencies = []
    for line in text.splitlines():
        cols = line.split()
        if len(cols) >= 3 and cols[2].isdigit():
            latencies.append(int(cols[2]) / 1e6)
    return latencies


def run_pgbench(topology: Topology, clients: int, duration_s: float,
                prefix: str) -> BoundResult:
    binary = pgbench_binary()
    seconds = max(1, round(duration_s))
    if binary is None:
        return BoundResult("pgbench", clients, seconds, False,
                           note="pgbench not found (apt-get install postgresql-15)")
    bouncer = topology.one("pgbouncer")
    with tempfile.TemporaryDirectory(prefix="civicpulse-pgbench-") as tmp:
        script = Path(tmp) / "user_audit.sql"
        script.write_text(PGBENCH_SCRIPT.format(prefix=prefix))
        env = {**os.environ, "PGPASSWORD": stack_secret(topology, APP.secret),
               "PGCONNECT_TIMEOUT": "5", "PGAPPNAME": "civicpulse-bench-pgbench"}
        argv = [binary, "-h", bouncer.address, "-p", str(bouncer.port), "-U", APP.user,
                "-n", "-M", "simple", "-f", str(script), "-c", str(clients),
                "-j", str(min(clients, 2)), "-T", str(seconds), "-l",
                "--log-prefix", str(Path(tmp) / "tx"), topology.sizing.postgresql.database]
        proc = subprocess.run(argv, cwd=tmp, env=env, capture_output=True, text=True,
                              timeout=seconds + 60)
        latencies: list[float] = []
        for log in Path(tmp).glob("tx*"):
            latencies.extend(parse_pgbench_log(log.read_text()))
    summary = parse_pgbench(proc.stdout)
    # Exit 2 means some clients aborted; the summary still holds what completed.
    if "tps" not in summary:
        return BoundResult("pgbench", clients, seconds, False,
                           note=f"exit {proc.returncode}: {proc.stderr.strip()[-300:]}")
    note = "" if proc.returncode == 0 else f"exit {proc.returncode}: some clients aborted"
    return BoundResult("pgbench", clients, seconds, True, per_s=round(summary["tps"], 1),
                       requests=int(summary.get("processed", 0)),
                       failed=int(summary.get("failed", 0)),
                       latency_ms=latency_summary_ms(latencies), note=note)


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _ms(value: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value)
    if not match:
        raise ValueError(f"not a wrk duration: {value!r}")
    return round(float(match.group(1)) * _UNITS[match.group(2)], 3)


def parse_wrk(stdout: str) -> dict[str, Any]:
    """Requests, duration, errors and the latency distribution from `wrk --latency`."""
    out: dict[str, Any] = {}
    total = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", stdout)
    if total:
        out["requests"] = int(total.group(1))
        out["duration_s"] = _ms(total.group(2) + total.group(3)) / 1000.0
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", stdout)
    out["non2xx"] = int(non2xx.group(1)) if non2xx else 0
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                     stdout)
    out["socket_errors"] = sum(int(x) for x in sock.groups()) if sock else 0
    dist = dict(re.findall(r"^\s+(50|75|90|99)%\s+([\d.]+(?:us|ms|s|m))\s*$", stdout, re.M))
    out["latency_ms"] = {f"p{k}": _ms(v) for k, v in dist.items()}
    out["statuses"] = {int(k): int(v) for k, v in re.findall(r"^status (\d+) (\d+)$", stdout,
                                                             re.M)}
    mean = re.search(r"Latency\s+([\d.]+(?:us|ms|s|m))", stdout)
    if mean:
        out["latency_ms"]["mean"] = _ms(mean.group(1))
    return out


def run_wrk(topology: Topology, connections: int, duration_s: float,
            target: str = "health") -> BoundResult:
    path, expected = WRK_TARGETS[target]
    tool = f"wrk {target}"
    binary = shutil.which("wrk")
    seconds = max(1, round(duration_s))
    if binary is None:
        return BoundResult(tool, connections, seconds, False,
                           note="wrk not found (apt-get install wrk)")
    url = topology.url("nginx", path or topology.workload.health_path)
    with tempfile.TemporaryDirectory(prefix="civicpulse-wrk-") as tmp:
        script = Path(tmp) / "status.lua"
        script.write_text(WRK_STATUS_LUA)
        argv = [binary, "-t", str(min(connections, 2)), "-c", str(connections),
                "-d", f"{seconds}s", "--timeout", "10s", "--latency", "-s", str(script), url]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30)
    parsed = parse_wrk(proc.stdout)
    if proc.returncode != 0 or "requests" not in parsed:
        return BoundResult(tool, connections, seconds, False,
                           note=f"exit {proc.returncode}: {proc.stderr.strip()[-300:]}")
    ok = parsed["statuses"].get(expected, 0)
    others = {k: v for k, v in parsed["statuses"].items() if k != expected}
    return BoundResult(tool, connections, seconds, True,
                       per_s=round(ok / parsed["duration_s"], 1), requests=parsed["requests"],
                       failed=parsed["requests"] - ok + parsed["socket_errors"],
                       latency_ms=parsed["latency_ms"],
                       note=", ".join(f"{v}× HTTP {k}" for k, v in sorted(others.items())))
