"""Derive the Ansible inventory (hosts, groups, variables) from a topology.

Nothing in `playbooks/` holds an address, a port or a size: every value a role uses
arrives through the variables built here. Roles get their own variables as
`<service>_<setting>` (e.g. `redis_maxmemory_mb`), checked by each role's
`meta/argument_specs.yml`; cross-service wiring (who talks to whom) comes from
`cp_endpoints`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from infra.catalog import debian_packages
from infra.drained import drained_hosts
from infra.paths import (
    PGBACKREST_CONF,
    PGBACKREST_STANZA,
    host_dir,
    notification_log_path,
    secrets_dir,
    textfile_dir,
    tls_dir,
    workload_archive_path,
)
from infra.topology import REPO_ROOT, Host, Topology
from infra.workload import requirements

#: The interpreter Ansible runs modules with on the hosts: Debian's, because it has
#: python3-apt (the apt module needs it) and, unlike a pyenv build in root's home,
#: it is readable by the service users.
HOST_PYTHON = "/usr/bin/python3"


def stack_vars(topology: Topology) -> dict[str, Any]:
    """Variables every host sees; also the context the monitoring templates render with."""
    endpoints: dict[str, list[dict[str, Any]]] = {}
    for svc in topology.services:
        endpoints.setdefault(svc.name, []).append(
            {"host": svc.host, "address": svc.address, "port": svc.port,
             "metrics_port": svc.metrics_port, "metrics_path": svc.kind.metrics_path,
             "exports": svc.kind.exports}
        )
    return {
        "cp_stack": topology.stack,
        "cp_target": topology.target,
        "cp_state_dir": str(topology.state_dir),
        "cp_secrets_dir": str(secrets_dir(topology)),
        "cp_repo": str(REPO_ROOT),
        "cp_endpoints": endpoints,
        "cp_sizing": topology.sizing.model_dump(),
        "cp_monitoring": topology.monitoring.model_dump(),
        "cp_workload": topology.workload.model_dump(),
        "cp_workload_archive": str(workload_archive_path(topology)),
        "cp_workload_requirements": requirements(topology),
        "cp_webhook": topology.webhook_endpoint,
        "cp_users": {s.name: s.kind.user for s in topology.services},
        "cp_tls_dir": str(tls_dir(topology)),
        # What the postgresql and pgbackrest roles share: whether WAL is archived, and
        # the names both sides use (the config path is below each host's directory).
        "cp_backup": {"enabled": topology.has_backups, "stanza": PGBACKREST_STANZA,
                      "config": str(PGBACKREST_CONF)},
    }


def machine_of(host: Host) -> str:
    """Which real machine a host lives on: loopback hosts share this one."""
    if host.connection == "local":
        return "localhost"
    return f"{host.ssh_host}:{host.ssh_port}"


def host_vars(topology: Topology, host: Host) -> dict[str, Any]:
    primary = next(h for h in topology.hosts if machine_of(h) == machine_of(host))
    hv: dict[str, Any] = {
        "cp_machine_primary": primary.name == host.name,
        "cp_machine_packages": debian_packages(
            [s.name for h in topology.hosts if machine_of(h) == machine_of(host)
             for s in h.services]),
        "cp_host": host.name,
        "cp_address": host.address,
        "cp_host_dir": str(host_dir(topology, host.name)),
        "cp_textfile_dir": str(textfile_dir(topology, host.name)),
        "cp_services": [s.name for s in host.services],
        "cp_roles": host_roles(host),
        "ansible_python_interpreter": HOST_PYTHON,
    }
    if host.connection == "local":
        hv["ansible_connection"] = "local"
    else:
        hv.update(ansible_connection="ssh", ansible_host=host.ssh_host,
                  ansible_port=host.ssh_port, ansible_user=host.ssh_user)
        if host.ssh_private_key:
            hv["ansible_ssh_private_key_file"] = host.ssh_private_key
        if host.ssh_known_hosts:
            # Ansible and testinfra (which reads these args from the inventory) both
            # verify the host against this file instead of the user's ~/.ssh.
            hv["ansible_ssh_common_args"] = (f"-o UserKnownHostsFile={host.ssh_known_hosts} "
                                             "-o StrictHostKeyChecking=yes")
    if host.runs("nginx"):
        # App hosts an operator drained (`python -m infra.ops drain`) stay drained
        # across re-deploys.
        hv["nginx_drained_hosts"] = drained_hosts(topology)
    if host.runs("alertmanager"):
        hv["alertmanager_notification_log"] = str(notification_log_path(topology))
    sizing = topology.sizing.model_dump()
    for svc in host.services:
        hv[f"{svc.name}_address"] = svc.address
        hv[f"{svc.name}_port"] = svc.port
        if svc.metrics_port != svc.port:
            hv[f"{svc.name}_metrics_port"] = svc.metrics_port
        hv[f"{svc.name}_user"] = svc.kind.user
        for key, value in sizing.get(svc.name, {}).items():
            hv[f"{svc.name}_{key}"] = value
    return hv


#: The Ansible role of each service, in the order a host applies them (site.yml):
#: a database before its pool and its backup agent (pgbackrest_pg), back ends before
#: the proxy, exporters after what they watch, Alertmanager before the Prometheus that
#: sends to it.
ROLE_ORDER = ("postgresql", "pgbackrest", "pgbouncer", "redis", "app", "nginx", "exporters",
              "alertmanager", "prometheus")


def role_of(service: str) -> str:
    if service == "pgbackrest_pg":
        return "pgbackrest"
    return "exporters" if service.endswith("_exporter") else service


def host_roles(host: Host) -> list[str]:
    """The roles site.yml includes on this host, in ROLE_ORDER."""
    wanted = {role_of(s.name) for s in host.services}
    return [role for role in ROLE_ORDER if role in wanted]


def build_inventory(topology: Topology) -> dict[str, Any]:
    groups: dict[str, dict[str, Any]] = {}
    for svc in topology.services:
        groups.setdefault(svc.name, {"hosts": {}})["hosts"][svc.host] = {}
    return {
        "all": {
            "vars": stack_vars(topology),
            "hosts": {h.name: host_vars(topology, h) for h in topology.hosts},
            "children": groups,
        }
    }


def write_inventory(topology: Topology, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = f"# Generated from {topology.source} by infra/inventory.py; do not edit.\n"
    text += yaml.safe_dump(build_inventory(topology), sort_keys=False)
    path.write_text(text, encoding="utf-8")
    return path
