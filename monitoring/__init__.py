"""Monitoring as code: Prometheus, Alertmanager, exporters and dashboards of a stack.

Everything here is derived from the stack config: `render` fills the templates the
Ansible roles deploy, `alerts` lists the alert names (for runbooks and GameDays),
`slo_rules` generates the SLO burn-rate rules, `dashboards` the Grafana JSON, and
`validate` runs promtool and amtool over a render. `python -m monitoring --help`.
"""
