"""Steady-state probes (HTTP, PromQL, command) and their tolerances.

The tolerance checks are pure functions (`check_*`), so that what "within tolerance"
means is unit-tested; `run_probe` does the I/O around them, always bounded by the
probe's timeout.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass
from typing import Any

import httpx

from gameday.scenario import Probe, Tolerance
from infra.runbook_env import runbook_env
from infra.targets.base import Target
from infra.topology import Topology


@dataclass
class ProbeResult:
    name: str
    ok: bool
    detail: str
    value: Any = None
    latency_ms: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_http(tol: Tolerance, status: int, latency_ms: float,
               body: Any = None) -> tuple[bool, str]:
    problems = []
    if tol.status is not None and status not in tol.status:
        problems.append(f"status {status} not in {tol.status}")
    if tol.max_latency_ms is not None and latency_ms > tol.max_latency_ms:
        problems.append(f"{latency_ms:.0f} ms > {tol.max_latency_ms:g} ms")
    if tol.json_field is not None:
        value = body.get(tol.json_field) if isinstance(body, dict) else None
        if value not in (tol.json_in or []):
            problems.append(f"{tol.json_field}={value!r} not in {tol.json_in}")
    return (not problems, "; ".join(problems) or f"{status} in {latency_ms:.0f} ms")


def check_promql(tol: Tolerance, values: list[float]) -> tuple[bool, str]:
    if not values:
        if tol.if_empty == "zero":
            values = [0.0]
        else:
            return False, "empty result"
    problems = []
    for v in values:
        if tol.min is not None and v < tol.min:
            problems.append(f"{v:g} < {tol.min:g}")
        if tol.max is not None and v > tol.max:
            problems.append(f"{v:g} > {tol.max:g}")
    shown = ", ".join(f"{v:g}" for v in values[:5])
    return (not problems, "; ".join(problems) or f"value {shown}")


def check_command(tol: Tolerance, exit_code: int | None, latency_ms: float,
                  timed_out: bool) -> tuple[bool, str]:
    if timed_out:
        return False, "timed out"
    problems = []
    if tol.exit_code is not None and exit_code != tol.exit_code:
        problems.append(f"exit {exit_code} != {tol.exit_code}")
    if tol.max_latency_ms is not None and latency_ms > tol.max_latency_ms:
        problems.append(f"{latency_ms:.0f} ms > {tol.max_latency_ms:g} ms")
    return (not problems, "; ".join(problems) or f"exit {exit_code}")


def promql_values(payload: dict[str, Any]) -> list[float]:
    data = payload.get("data", {})
    kind, result = data.get("resultType"), data.get("result", [])
    if kind == "scalar":
        return [float(result[1])]
    if kind == "vector":
        return [float(item["value"][1]) for item in result]
    raise ValueError(f"unsupported result type {kind!r} (use an instant vector or scalar)")


class ProbeRunner:
    def __init__(self, topology: Topology, target: Target) -> None:
        self.topology = topology
        self.target = target
        self._client = httpx.AsyncClient()
        self._env = runbook_env(topology)

    async def close(self) -> None:
        await self._client.aclose()

    async def run(self, probe: Probe) -> ProbeResult:
        try:
            if probe.http is not None:
                return await self._http(probe)
            if probe.promql is not None:
                return await self._promql(probe)
            return await self._command(probe)
        except Exception as exc:  # noqa: BLE001 - a probe that breaks is a failed probe
            return ProbeResult(probe.name, False, f"{type(exc).__name__}: {exc}")

    async def run_all(self, probes: list[Probe]) -> list[ProbeResult]:
        return list(await asyncio.gather(*(self.run(p) for p in probes)))

    async def _http(self, probe: Probe) -> ProbeResult:
        assert probe.http is not None
        spec = probe.http
        svc = self.topology.instances(spec.service)[0]
        start = time.monotonic()
        try:
            response = await self._client.request(
                spec.method, f"http://{svc.endpoint}{spec.path}", timeout=spec.timeout_s,
                headers={"User-Agent": "civicpulse-gameday-probe"})
        except httpx.HTTPError as exc:
            return ProbeResult(probe.name, False, f"{type(exc).__name__}: {exc}".rstrip(": "))
        latency = (time.monotonic() - start) * 1000.0
        try:
            body = response.json()
        except ValueError:
            body = None
        ok, detail = check_http(probe.tolerance, response.status_code, latency, body)
        return ProbeResult(probe.name, ok, detail, response.status_code, round(latency, 1))

    async def _promql(self, probe: Probe) -> ProbeResult:
        assert probe.promql is not None
        start = time.monotonic()
        try:
            response = await self._client.get(
                self.topology.url("prometheus", "/api/v1/query"),
                params={"query": probe.promql.query}, timeout=probe.promql.timeout_s)
            response.raise_for_status()
            values = promql_values(response.json())
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            return ProbeResult(probe.name, False, f"query failed: {type(exc).__name__}: {exc}")
        ok, detail = check_promql(probe.tolerance, values)
        return ProbeResult(probe.name, ok, detail, values[:5],
                           round((time.monotonic() - start) * 1000.0, 1))

    async def _command(self, probe: Probe) -> ProbeResult:
        assert probe.command is not None
        spec = probe.command
        host = spec.host or self.topology.hosts[0].name
        result = await asyncio.to_thread(self.target.run, host, spec.argv, spec.timeout_s,
                                         None, self._env)
        latency = result.duration_s * 1000.0
        ok, detail = check_command(probe.tolerance, result.exit_code, latency, result.timed_out)
        if not ok and result.stderr:
            detail += f" ({result.stderr.strip().splitlines()[-1][:160]})"
        return ProbeResult(probe.name, ok, detail, result.exit_code, round(latency, 1))
