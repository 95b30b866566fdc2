"""Command line of the monitoring package (thin: each command calls one function).

    python -m monitoring alerts [--stack lab] [--json]   alert names, one a line
    python -m monitoring render --stack lab --out DIR     render every template
    python -m monitoring check [--stack lab]              render + promtool/amtool
    python -m monitoring slo [--check]                    regenerate the SLO rules
    python -m monitoring dashboards [--check]             regenerate the dashboards
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from infra.topology import load_stack
from infra.yaml_source import ConfigError
from monitoring import alerts, render, slo_rules, validate


def _alerts(args: argparse.Namespace) -> int:
    topology = load_stack(args.stack)
    if args.json:
        print(json.dumps([rule.as_dict() for rule in alerts.alert_rules(topology)], indent=2))
    else:
        print("\n".join(alerts.alert_names(topology)))
    return 0


def _render(args: argparse.Namespace) -> int:
    for path in render.write_rendered(load_stack(args.stack), Path(args.out)):
        print(path)
    return 0


def _check(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="monitoring-check-") as tmp:
        results = validate.check_stack(load_stack(args.stack), Path(tmp))
    width = max(len(r.what) for r in results)
    for result in results:
        print(f"{result.what:<{width}}  {'ok' if result.ok else 'FAILED'}")
        if not result.ok:
            print("    " + result.output.replace("\n", "\n    "))
    return 0 if all(r.ok for r in results) else 1


def _slo(args: argparse.Namespace) -> int:
    status = 0
    for spec in slo_rules.spec_paths():
        if args.check:
            if slo_rules.stale(spec):
                print(f"{slo_rules.output_path(spec)} is out of date with {spec}: run "
                      "`python -m monitoring slo`", file=sys.stderr)
                status = 1
        else:
            print(slo_rules.write(spec))
    return status


def _dashboards(args: argparse.Namespace) -> int:
    from monitoring import dashboards

    if args.check:
        stale = dashboards.stale()
        for name in stale:
            print(f"{dashboards.DASHBOARDS_DIR / name} is out of date: run "
                  "`python -m monitoring dashboards`", file=sys.stderr)
        return 1 if stale else 0
    for path in dashboards.write_all():
        print(path)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m monitoring",
                                     description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("alerts", help="list the alert names of the rules")
    p.add_argument("--stack", default=alerts.DEFAULT_STACK, help="stack name or file")
    p.add_argument("--json", action="store_true", help="name, severity, summary, runbook_url…")
    p.set_defaults(func=_alerts)
    p = sub.add_parser("render", help="render every template for a stack")
    p.add_argument("--stack", default=alerts.DEFAULT_STACK)
    p.add_argument("--out", required=True, help="output directory")
    p.set_defaults(func=_render)
    p = sub.add_parser("check", help="render for a stack and run promtool and amtool")
    p.add_argument("--stack", default=alerts.DEFAULT_STACK)
    p.set_defaults(func=_check)
    p = sub.add_parser("slo", help="regenerate prometheus/rules/slo-*.yml.j2 from slo/*.yaml")
    p.add_argument("--check", action="store_true", help="only report stale files")
    p.set_defaults(func=_slo)
    p = sub.add_parser("dashboards", help="regenerate grafana/dashboards/*.json")
    p.add_argument("--check", action="store_true", help="only report stale files")
    p.set_defaults(func=_dashboards)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
