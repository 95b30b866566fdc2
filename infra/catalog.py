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
    #: The uid (and gid) of `user` in the docker target's image of this service: fixed,
    #: because files are uploaded into containers by number, and a data volume keeps
    #: its owner across image rebuilds. (The local target lets Debian pick.)
    docker_uid: int = 0
    #: Port of its own for the metrics endpoint (None: scraped on `port`). The app has
    #: one so that a scrape never queues behind requests that busy workers hold.
    metrics_port: int | None = None


SERVICE_KINDS: dict[str, ServiceKind] = {
    kind.name: kind
    for kind in (
        ServiceKind("nginx", 8080, "cp-nginx", ("nginx",), metrics_path=None,
                    docker_uid=10010),
        ServiceKind("app", 8000, "cp-app", ("python3-venv",), metrics_port=8001,
                    docker_uid=10001),
        ServiceKind("postgresql", 5432, "cp-postgresql", ("postgresql-15",), metrics_path=None,
                    docker_uid=10020),
        ServiceKind("pgbouncer", 6432, "cp-pgbouncer", ("pgbouncer",), metrics_path=None,
                    docker_uid=10030),
        ServiceKind("redis", 6379, "cp-redis", ("redis-server",), metrics_path=None,
                    docker_uid=10040),
        ServiceKind("prometheus", 9090, "cp-prometheus", ("prometheus",),
                    docker_uid=10050),
        ServiceKind("alertmanager", 9093, "cp-alertmanager", ("prometheus-alertmanager",),
                    docker_uid=10060),
        ServiceKind("node_exporter", 9100, "cp-node-exporter", ("prometheus-node-exporter",),
                    docker_uid=10070),
        ServiceKind("postgres_exporter", 9187, "cp-postgres-exporter",
                    ("prometheus-postgres-exporter",), exports="postgresql",
                    docker_uid=10080),
        ServiceKind("pgbouncer_exporter", 9127, "cp-pgbouncer-exporter", ("python3-venv",),
                    exports="pgbouncer", docker_uid=10090),
        ServiceKind("redis_exporter", 9121, "cp-redis-exporter", ("prometheus-redis-exporter",),
                    exports="redis", docker_uid=10100),
        ServiceKind("nginx_exporter", 9113, "cp-nginx-exporter", ("prometheus-nginx-exporter",),
                    exports="nginx", docker_uid=10110),
        # The backup repository: pgBackRest's TLS server on a host of its own, which
        # also runs the backups (pgBackRest runs them on the repository host).
        ServiceKind("pgbackrest", 8432, "cp-pgbackrest", ("pgbackrest",), metrics_path=None,
                    docker_uid=10120),
        # pgBackRest's TLS server on the database host, through which the repository
        # reads the cluster. Not a user of its own: pgBackRest must run as the
        # cluster's owner to read and restore its data directory.
        ServiceKind("pgbackrest_pg", 8433, "cp-postgresql", ("pgbackrest",), metrics_path=None,
                    docker_uid=10020),
        # The backup schedule's metrics: node_exporter with its textfile collector only
        # (the machine's own metrics come from the one node_exporter of the stack).
        ServiceKind("pgbackrest_exporter", 9854, "cp-pgbackrest-exporter",
                    ("prometheus-node-exporter",), exports="pgbackrest", docker_uid=10130),
    )
}

#: Services a complete CivicPulse stack cannot do without: exactly one of each,
#: except `app`, which may run on as many hosts as wanted (at least one).
REQUIRED_SINGLETONS = ("nginx", "postgresql", "pgbouncer", "redis", "prometheus", "alertmanager")
#: Services a stack may leave out, but runs at most once.
OPTIONAL_SINGLETONS = ("pgbackrest", "pgbackrest_pg", "pgbackrest_exporter")


#: What every host needs whatever it runs: its supervisor, the Ansible modules'
#: Python libraries (apt, psycopg2 for the community.postgresql modules), nftables
#: for GameDay network faults, the clients runbooks and checks use.
#: The clients health checks, runbooks and checks use: on every host of the local
#: target, in every image of the docker target.
CLIENT_PACKAGES = ("postgresql-client-15", "redis-tools", "curl")
BASE_PACKAGES = ("supervisor", "nftables", "python3-venv", "python3-apt", "python3-psycopg2",
                 *CLIENT_PACKAGES)


def debian_packages(services: list[str] | None = None) -> list[str]:
    """Debian packages for these services (default: all) plus the base of every host."""
    names = set(BASE_PACKAGES)
    for name, kind in SERVICE_KINDS.items():
        if services is None or name in services:
            names.update(kind.packages)
    return sorted(names)


if __name__ == "__main__":
    print(" ".join(debian_packages()))
