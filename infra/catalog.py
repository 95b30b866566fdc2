"""The services a stack can run, and what each needs from the machine.

This is the fixed vocabulary of the stack config: a host lists service names from
here, and every derived artefact (Ansible inventory, Prometheus targets, Pulumi
containers, GameDay fault targets) looks the service up here for its defaults.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServiceKind:
    name: str
    port: int
    #: Dedicated system user: one per service so that firewall rules scoped by uid
    #: (`meta skuid`) can tell the services apart on loopback, where every client
    #: connects from 127.0.0.1.
    user: str
    packages: tuple[str, ...] = ()
    #: Path Prometheus scrapes on this service's port, or None if it exposes no metrics.
    metrics_path: str | None = "/metrics"
    #: The service this one exports metrics for (exporters only).
    exports: str | None = None
    docker_image: str = ""
    #: Port of its own for the metrics endpoint (None: scraped on `port`). The app has
    #: one so that a scrape never queues behind requests that busy workers hold.
    metrics_port: int | None = None


SERVICE_KINDS: dict[str, ServiceKind] = {
    kind.name: kind
    for kind in (
        ServiceKind("nginx", 8080, "cp-nginx", ("nginx",), metrics_path=None,
                    docker_image="nginx:1.27-alpine"),
        ServiceKind("app", 8000, "cp-app", ("python3-venv",), metrics_port=8001,
                    docker_image="civicpulse-app:local"),
        ServiceKind("postgresql", 5432, "cp-postgresql", ("postgresql-15",), metrics_path=None,
                    docker_image="postgres:15-bookworm"),
        ServiceKind("pgbouncer", 6432, "cp-pgbouncer", ("pgbouncer",), metrics_path=None,
                    docker_image="edoburu/pgbouncer:v1.25.1-p0"),
        ServiceKind("redis", 6379, "cp-redis", ("redis-server",), metrics_path=None,
                    docker_image="redis:7.0-bookworm"),
        ServiceKind("prometheus", 9090, "cp-prometheus", ("prometheus",),
                    docker_image="prom/prometheus:v2.42.0"),
        ServiceKind("alertmanager", 9093, "cp-alertmanager", ("prometheus-alertmanager",),
                    docker_image="prom/alertmanager:v0.25.0"),
        ServiceKind("node_exporter", 9100, "cp-node-exporter", ("prometheus-node-exporter",),
                    docker_image="prom/node-exporter:v1.5.0"),
        ServiceKind("postgres_exporter", 9187, "cp-postgres-exporter",
                    ("prometheus-postgres-exporter",), exports="postgresql",
                    docker_image="quay.io/prometheuscommunity/postgres-exporter:v0.11.1"),
        ServiceKind("pgbouncer_exporter", 9127, "cp-pgbouncer-exporter", ("python3-venv",),
                    exports="pgbouncer", docker_image="civicpulse-app:local"),
        ServiceKind("redis_exporter", 9121, "cp-redis-exporter", ("prometheus-redis-exporter",),
                    exports="redis", docker_image="oliver006/redis_exporter:v1.45.0-alpine"),
        ServiceKind("nginx_exporter", 9113, "cp-nginx-exporter", ("prometheus-nginx-exporter",),
                    exports="nginx", docker_image="nginx/nginx-prometheus-exporter:0.10.0"),
    )
}

#: Services a complete CivicPulse stack cannot do without: exactly one of each,
#: except `app`, which may run on as many hosts as wanted (at least one).
REQUIRED_SINGLETONS = ("nginx", "postgresql", "pgbouncer", "redis", "prometheus", "alertmanager")


#: What every host needs whatever it runs: its supervisor, the Ansible modules'
#: Python libraries (apt, psycopg2 for the community.postgresql modules), nftables
#: for GameDay network faults, the clients runbooks and checks use.
BASE_PACKAGES = ("supervisor", "nftables", "python3-venv", "python3-apt", "python3-psycopg2",
                 "postgresql-client-15", "redis-tools", "curl")


def debian_packages(services: list[str] | None = None) -> list[str]:
    """Debian packages for these services (default: all) plus the base of every host."""
    names = set(BASE_PACKAGES)
    for name, kind in SERVICE_KINDS.items():
        if services is None or name in services:
            names.update(kind.packages)
    return sorted(names)


if __name__ == "__main__":
    print(" ".join(debian_packages()))
