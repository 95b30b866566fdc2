"""Turn `--service` / `--host` into the stack's service instances, or say what is valid.

At 3 a.m. a typo must not cost a minute: every error names the hosts or services
that do exist, and where the asked-for service actually runs.
"""

from __future__ import annotations

from infra.ops.outcome import OpsError
from infra.topology import Host, Service, Topology


def host_names(topology: Topology) -> list[str]:
    return [h.name for h in topology.hosts]


def service_names(topology: Topology) -> list[str]:
    return sorted({s.name for s in topology.services})


def find_host(topology: Topology, name: str) -> Host:
    for host in topology.hosts:
        if host.name == name:
            return host
    raise OpsError(f"stack {topology.stack} has no host {name!r}; its hosts are: "
                   f"{', '.join(host_names(topology))}")


def instances(topology: Topology, service: str | None, host: str | None) -> list[Service]:
    """Every instance matching the filters (both optional; empty strings mean unset).

    Raises OpsError if a name is unknown or the service does not run on that host.
    """
    service = service or None
    host = host or None
    if service is not None and service not in service_names(topology):
        raise OpsError(f"stack {topology.stack} runs no service {service!r}; its services "
                       f"are: {', '.join(service_names(topology))}")
    if host is not None:
        found = find_host(topology, host)
        if service is not None and not found.runs(service):
            where = ", ".join(s.host for s in topology.instances(service))
            raise OpsError(f"{service} does not run on host {host} of stack "
                           f"{topology.stack}; it runs on: {where}")
    return [s for s in topology.services
            if (service is None or s.name == service) and (host is None or s.host == host)]


def by_scrape_target(topology: Topology, target: str) -> Service:
    """The service instance Prometheus scrapes at `target` (an alert's `instance`
    label, address:port): TargetDown names the exporter only this way, since its
    `service` label is the service the exporter describes."""
    for svc in topology.services:
        if svc.kind.metrics_path and svc.metrics_endpoint == target:
            return svc
    scraped = sorted(f"{s.metrics_endpoint} ({s.name}@{s.host})" for s in topology.services
                     if s.kind.metrics_path)
    raise OpsError(f"stack {topology.stack} has no scrape target {target!r}; its scrape "
                   f"targets are: {', '.join(scraped)}")


def one_instance(topology: Topology, service: str, host: str | None = None) -> Service:
    """Exactly one instance of `service`: the only one, or the one on `host`."""
    found = instances(topology, service, host)
    if len(found) > 1:
        raise OpsError(f"{service} runs on {len(found)} hosts of stack {topology.stack} "
                       f"({', '.join(s.host for s in found)}): pass --host")
    return found[0]
