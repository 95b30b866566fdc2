"""Ask the stack's Prometheus: which alerts fire, and what a PromQL expression says.

Runbooks quote PromQL; `promql` runs it against the right Prometheus (the stack's
monitor host) without anyone typing an address, and `--expect-empty` turns "the
alert's condition no longer holds" into an exit status for verify steps.
"""

from __future__ import annotations

from typing import Any

import httpx

from infra.ops.outcome import OpsError, Outcome
from infra.topology import Topology

TIMEOUT_S = 5.0
_HIDDEN_LABELS = {"alertname", "__name__"}


def _get(topology: Topology, path: str, params: dict[str, str] | None = None) -> Any:
    url = topology.url("prometheus", path)
    try:
        resp = httpx.get(url, params=params, timeout=TIMEOUT_S)
    except httpx.HTTPError as exc:
        raise OpsError(f"Prometheus at {url} does not answer ({type(exc).__name__}: {exc}); "
                       f"is it up? (python -m infra.ops status --stack {topology.stack} "
                       "--service prometheus)") from None
    try:
        body = resp.json()
    except ValueError:
        raise OpsError(f"Prometheus at {url} answered HTTP {resp.status_code} with no "
                       "JSON") from None
    if body.get("status") != "success":
        raise OpsError(f"Prometheus rejected the request: {body.get('errorType', '')} "
                       f"{body.get('error', resp.text[:200])}")
    return body["data"]


def _labels(labels: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(labels.items()) if k not in _HIDDEN_LABELS)


def alerts(topology: Topology, name: str | None = None, state: str = "firing",
           fail_if_firing: bool = False, expect_firing: bool = False) -> Outcome:
    """Alerts Prometheus has right now (firing by default; `any` adds pending)."""
    if state not in ("firing", "pending", "any"):
        raise OpsError(f"--state must be firing, pending or any, not {state!r}")
    data = _get(topology, "/api/v1/alerts")
    outcome = Outcome(title=f"alerts of stack {topology.stack} ({state})",
                      columns=["alert", "state", "since", "labels", "summary"])
    for alert in sorted(data.get("alerts", []),
                        key=lambda a: (a["labels"].get("alertname", ""), a.get("activeAt", ""))):
        alertname = alert["labels"].get("alertname", "")
        if name and alertname != name:
            continue
        if state != "any" and alert.get("state") != state:
            continue
        outcome.rows.append([alertname, alert.get("state"), alert.get("activeAt", "")[:19],
                             _labels(alert["labels"]),
                             alert.get("annotations", {}).get("summary", "")])
    firing = [r for r in outcome.records() if r["state"] == "firing"
              and r["alert"] != "Watchdog"]
    if fail_if_firing and firing:
        outcome.fail(f"still firing: {', '.join(sorted({r['alert'] for r in firing}))}")
    elif expect_firing and not any(r["state"] == "firing" for r in outcome.records()):
        outcome.fail(f"not firing: {name or 'any alert'}")
    elif not outcome.rows:
        outcome.note(f"no {'' if state == 'any' else state + ' '}alert"
                     f"{' named ' + name if name else ''}")
    return outcome


def query(topology: Topology, expr: str, expect_empty: bool = False) -> Outcome:
    """Evaluate PromQL now; with `expect_empty`, fail if it returns any series."""
    data = _get(topology, "/api/v1/query", {"query": expr})
    outcome = Outcome(title=expr, columns=["labels", "value"])
    result = data.get("result", [])
    if data.get("resultType") in ("scalar", "string"):
        result = [{"metric": {}, "value": result}]
    for series in result:
        value = series.get("value", [None, ""])[1]
        outcome.rows.append([_labels(series.get("metric", {})) or "{}", value])
    if expect_empty and outcome.rows:
        outcome.fail(f"{len(outcome.rows)} series match: the condition still holds")
    elif not outcome.rows:
        outcome.note("empty result (no series match)")
    return outcome
