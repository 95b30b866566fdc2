"""Just enough PromQL reading to list the metric names an expression uses.

promtool 2.42 checks syntax (through rule files) but not whether a metric exists.
This strips strings, label matchers, ranges and grouping clauses, then takes every
remaining identifier that is not a function call or a keyword. It is a linter's
approximation, not a parser: good for catching typos in our own expressions.
"""

from __future__ import annotations

import re

_KEYWORDS = frozenset({
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
    "offset", "bool", "atan2", "inf", "nan", "Inf", "NaN",
})
_STRING = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'')
_BRACES = re.compile(r"\{[^{}]*\}")
_BRACKETS = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_IDENTIFIER = re.compile(r"(?<![\w:.$])([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?")


def metric_names(expr: str) -> set[str]:
    """Metric names used in a PromQL expression (Grafana $variables allowed)."""
    text = _STRING.sub('""', expr)
    text = _BRACES.sub("{}", text)
    text = _BRACKETS.sub("", text)
    text = _GROUPING.sub(" ", text)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        name, call = match.group(1), match.group(2)
        if call or name in _KEYWORDS:
            continue
        names.add(name)
    return names


#: Grafana's macros and our dashboard variables, with values Prometheus accepts.
GRAFANA_SUBSTITUTIONS = {
    "$__rate_interval": "1m",
    "$__interval": "15s",
    "$__range": "1h",
    "$host": ".*",
}


def grafana_to_promql(expr: str) -> str:
    """A dashboard query with Grafana's variables replaced, for promtool to parse."""
    for variable, value in GRAFANA_SUBSTITUTIONS.items():
        expr = expr.replace(variable, value)
    return expr
