"""Multi-window, multi-burn-rate SLO rules generated from a short SLO spec.

In the manner of slok/sloth: `monitoring/slo/<service>.yaml` states the SLI as an
error query and a total query; this module writes the recording rules for each
window and the page and ticket alerts of the Google SRE workbook policy:

    page   (critical): 5m and 1h above 14.4x the budget, or 30m and 6h above 6x
    ticket (warning):  2h and 1d above 3x,              or 6h and 3d above 1x

The output, `monitoring/prometheus/rules/slo-<service>.yml.j2`, is checked in so
that a review shows what a spec change does to the rules; a unit test regenerates
it and fails on any difference. It is a template like the other rule files: the
objective comes from the stack config when the prometheus role renders it.

One departure from sloth: the lab scrapes and evaluates every second, so a
`rate(...[3d])` over raw counters would read millions of samples per evaluation.
The paging windows (5m, 30m, 1h) come from the counters; the longer ones are
derived from the recorded 5m event rates (`sum_over_time` of the error rate over
`sum_over_time` of the total rate: still weighted by traffic) in a group that runs
every 30 s. The error query must aggregate to a single series (`sum(...)`): it gets
`or vector(0)` so that "no error series yet" reads as a 0 ratio.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from monitoring.render import MONITORING_DIR

SPEC_DIR = MONITORING_DIR / "slo"
RULES_DIR = MONITORING_DIR / "prometheus" / "rules"
WINDOW_PLACEHOLDER = "{{.window}}"
#: Windows computed straight from the SLI's counters.
RAW_WINDOWS = ("5m", "30m", "1h")
#: Windows derived from the recorded 5m event rates, and how often they refresh.
DERIVED_WINDOWS = ("2h", "6h", "1d", "3d")
DERIVED_INTERVAL = "30s"


@dataclass(frozen=True)
class BurnRateWindow:
    """Alert when both windows burn the budget `factor` times faster than allowed."""

    short: str
    long: str
    factor: float


PAGE_WINDOWS = (BurnRateWindow("5m", "1h", 14.4), BurnRateWindow("30m", "6h", 6))
TICKET_WINDOWS = (BurnRateWindow("2h", "1d", 3), BurnRateWindow("6h", "3d", 1))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SliEvents(_Strict):
    error_query: str = Field(min_length=1)
    total_query: str = Field(min_length=1)


class Sli(_Strict):
    events: SliEvents


class AlertSpec(_Strict):
    name: str = Field(pattern=r"^[A-Z][A-Za-z0-9]*$")
    severity: str = Field(pattern=r"^(critical|warning)$")


class Alerting(_Strict):
    page_alert: AlertSpec
    ticket_alert: AlertSpec


class Slo(_Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    description: str
    #: Dotted path of the objective in the stack config, e.g. monitoring.slo_availability.
    objective_from: str = Field(pattern=r"^monitoring\.[a-z_]+$")
    sli: Sli
    alerting: Alerting


class SloSpec(_Strict):
    version: str = Field(pattern=r"^civicpulse/slo/v1$")
    service: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    period: str = Field(pattern=r"^30d$")
    slos: list[Slo] = Field(min_length=1)


def load_spec(path: Path) -> SloSpec:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return SloSpec.model_validate(data)


def output_path(spec_path: Path) -> Path:
    return RULES_DIR / f"slo-{load_spec(spec_path).service}.yml.j2"


def spec_paths() -> list[Path]:
    return sorted(SPEC_DIR.glob("*.yaml"))


class _Dumper(yaml.SafeDumper):
    """Block style for multi-line PromQL and no anchors: the file reads like a hand one."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str_presenter(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str_presenter)


def _budget_var(slo: Slo) -> str:
    return f"budget_{slo.name}"


def _objective_var(slo: Slo) -> str:
    return f"objective_{slo.name}"


def _ratio_record(window: str) -> str:
    return f"slo:sli_error:ratio_rate{window}"


def _burn_condition(selector: str, pair: BurnRateWindow, budget: str) -> str:
    threshold = f"({pair.factor:g} * {budget})"
    return (
        f"(\n"
        f"  max without (window) ({_ratio_record(pair.short)}{selector} > {threshold})\n"
        f"  and\n"
        f"  max without (window) ({_ratio_record(pair.long)}{selector} > {threshold})\n"
        f")"
    )


def _alert(service: str, slo: Slo, spec: AlertSpec, pairs: tuple[BurnRateWindow, ...],
           kind: str) -> dict[str, Any]:
    labels = {"service": service, "slo": slo.name}
    selector = "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"
    budget = f"[% {_budget_var(slo)} %]"
    expr = "\nor\n".join(_burn_condition(selector, pair, budget) for pair in pairs) + "\n"
    policy = "; or ".join(
        f"{p.short} and {p.long} above {p.factor:g}x (a 30-day budget gone in "
        f"{30 / p.factor:.0f} days)" for p in pairs
    )
    return {
        "alert": spec.name,
        "expr": expr,
        "labels": {"severity": spec.severity, **labels},
        "annotations": {
            "summary": f"The {service} burns its {slo.name} error budget too fast ({kind})",
            "description": (
                f"SLO {service}/{slo.name}: {slo.description}, objective "
                f"[% {_objective_var(slo)}_pct %]%. {{{{ $value | humanizePercentage }}}} of "
                f"requests fail, so the error budget burns {policy}."
            ),
            "runbook_url": f"runbooks/{spec.name}.md",
        },
    }


def _groups(spec: SloSpec, slo: Slo) -> list[dict[str, Any]]:
    labels = {"service": spec.service, "slo": slo.name}
    selector = "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"
    events = slo.sli.events

    def query(template: str, window: str) -> str:
        return template.replace(WINDOW_PLACEHOLDER, window)

    def errors(window: str) -> str:
        # An error series appears only with the first error (the app cannot know its
        # status labels in advance): read "no error yet" as 0, not as absent, or the
        # ratio and the burn rate are empty until the first 5xx.
        return f"({query(events.error_query, window)} or vector(0))"

    short_rules: list[dict[str, Any]] = [
        {"record": "slo:sli_error_events:rate5m", "expr": errors("5m"), "labels": labels},
        {"record": "slo:sli_total_events:rate5m", "expr": query(events.total_query, "5m"),
         "labels": labels},
    ]
    for window in RAW_WINDOWS:
        short_rules.append({
            "record": _ratio_record(window),
            "expr": f"{errors(window)}\n/\n{query(events.total_query, window)}\n",
            "labels": {**labels, "window": window},
        })
    short_rules += [
        {"record": "slo:objective:ratio", "expr": f"vector([% {_objective_var(slo)} %])",
         "labels": labels},
        {"record": "slo:error_budget:ratio", "expr": f"vector([% {_budget_var(slo)} %])",
         "labels": labels},
        {"record": "slo:current_burn_rate:ratio",
         "expr": f"{_ratio_record('5m')}{selector}\n  / on (service, slo) group_left\n"
                 f"slo:error_budget:ratio{selector}\n",
         "labels": labels},
    ]
    long_rules = [
        {
            "record": _ratio_record(window),
            "expr": f"sum_over_time(slo:sli_error_events:rate5m{selector}[{window}])\n"
                    f"  / sum_over_time(slo:sli_total_events:rate5m{selector}[{window}])\n",
            "labels": {**labels, "window": window},
        }
        for window in DERIVED_WINDOWS
    ]
    alerting = slo.alerting
    prefix = f"slo-{spec.service}-{slo.name}"
    return [
        {"name": f"{prefix}-sli", "rules": short_rules},
        {"name": f"{prefix}-sli-long", "interval": DERIVED_INTERVAL, "rules": long_rules},
        {"name": f"{prefix}-alerts", "rules": [
            _alert(spec.service, slo, alerting.page_alert, PAGE_WINDOWS, "page"),
            _alert(spec.service, slo, alerting.ticket_alert, TICKET_WINDOWS, "ticket"),
        ]},
    ]


def generate(spec_path: Path) -> str:
    """The rule template for one SLO spec, as checked in."""
    spec = load_spec(spec_path)
    relative_spec = spec_path.resolve().relative_to(MONITORING_DIR.parent)
    relative_out = output_path(spec_path).relative_to(MONITORING_DIR.parent)
    lines = [
        "#jinja2:variable_start_string:'[%', variable_end_string:'%]'",
        f"{{# GENERATED by `python -m monitoring slo` from {relative_spec}: edit the spec and",
        "   regenerate, never this file. Jinja variables are [% %]; {{ }} is Prometheus'. #}",
    ]
    for slo in spec.slos:
        source = "cp_" + slo.objective_from
        lines += [
            f"{{% set {_objective_var(slo)} = {source} %}}",
            f"{{% set {_objective_var(slo)}_pct = '%g' | format({source} * 100) %}}",
            f"{{% set {_budget_var(slo)} = '%g' | format(1 - {source}) %}}",
        ]
    groups = [group for slo in spec.slos for group in _groups(spec, slo)]
    body = yaml.dump({"groups": groups}, Dumper=_Dumper, sort_keys=False, width=1000,
                     default_flow_style=False, allow_unicode=True)
    lines += [
        "---",
        f"# Rendered from {relative_out} (generated from {relative_spec}) for stack "
        "[% cp_stack %]; do not edit.",
        body.rstrip("\n"),
    ]
    return "\n".join(lines) + "\n"


def write(spec_path: Path) -> Path:
    target = output_path(spec_path)
    target.write_text(generate(spec_path), encoding="utf-8")
    return target


def stale(spec_path: Path) -> bool:
    """True when the checked-in rules differ from what the spec generates."""
    target = output_path(spec_path)
    return not target.is_file() or target.read_text(encoding="utf-8") != generate(spec_path)
