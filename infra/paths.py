"""Where a stack keeps its state on the controller: one place for every path under
`topology.state_dir`.

These are facts of the topology, not of the Ansible inventory: the deploy, the ops
commands, the GameDay engine and the benchmark all need them, and most of them need
nothing else of `infra.inventory`. The layout:

    <state_dir>/hosts/<host>/   config, data, logs and supervisor of one host
    <state_dir>/secrets/        the stack's secrets (0600, see infra.secrets), and in
                                secrets/tls/ its CA and host certificates (infra.tls)
    <state_dir>/work/           controller scratch: inventory, Ansible's home, logs
    <state_dir>/ops/            what ops commands record (the drained app hosts)
    <state_dir>/pulumi/         docker target: the Pulumi backend (its state)
    <state_dir>/pulumi-home/    docker target: the Pulumi CLI's home
    <state_dir>/gameday/        the GameDay lock and rollback log (gameday.rollback_log)
"""

from __future__ import annotations

from pathlib import Path

from infra.topology import Topology


def host_dir(topology: Topology, host: str) -> Path:
    """Per-host directory: config, data, logs and supervisor of one host."""
    return topology.state_dir / "hosts" / host


def supervisor_conf(topology: Topology, host: str) -> Path:
    """The supervisord.conf of one host (what `supervisorctl -c` needs)."""
    return host_dir(topology, host) / "supervisor" / "supervisord.conf"


#: Where the lab pager's log is, below the Alertmanager host's directory.
NOTIFICATION_LOG = Path("alertmanager") / "notifications" / "notifications.jsonl"


def notification_log_path(topology: Topology) -> Path:
    """The lab pager's log (monitoring/alertmanager/notification_log.py): every webhook
    notification Alertmanager sent, one JSON object per line."""
    return host_dir(topology, topology.one("alertmanager").host) / NOTIFICATION_LOG


#: pgBackRest's config on each host that runs it, below the host's directory: one
#: file per host (several stacks share this machine), passed to every command with
#: --config.
PGBACKREST_CONF = Path("pgbackrest") / "pgbackrest.conf"
#: The stanza: pgBackRest's name for the one cluster the repository backs up.
PGBACKREST_STANZA = "civicpulse"


def pgbackrest_conf(topology: Topology, host: str) -> Path:
    return host_dir(topology, host) / PGBACKREST_CONF


def postgresql_data_dir(topology: Topology, host: str) -> Path:
    """The cluster's data directory on the database host: inside its size-limited
    volume when the stack gives one (the postgresql role's postgresql_data_dir; the
    pgbackrest role's pgbackrest_pg_data_dir says the same, and `pgbackrest check`
    at every deploy fails if they differ)."""
    base = host_dir(topology, host) / "postgresql"
    if topology.sizing.postgresql.data_volume_mb is not None:
        base = base / "volume"
    return base / "data"


def pgbouncer_dir(topology: Topology, host: str) -> Path:
    """PgBouncer's directory (the pgbouncer role's pgbouncer_dir): its config and its
    Unix socket, over which its own OS user reaches the admin console."""
    return host_dir(topology, host) / "pgbouncer"


def textfile_dir(topology: Topology, host: str) -> Path:
    """Metrics files node_exporter's textfile collector reads on this host (written by
    the backup schedule and the restore check on the backup host)."""
    return host_dir(topology, host) / "metrics"


def tls_dir(topology: Topology) -> Path:
    """The stack's CA and host certificates (infra.tls), among its secrets."""
    return secrets_dir(topology) / "tls"


def secrets_dir(topology: Topology) -> Path:
    """The stack's secrets, one file per name (infra.secrets.SECRET_NAMES)."""
    return topology.state_dir / "secrets"


def work_dir(topology: Topology) -> Path:
    """Controller-side scratch: generated inventory, Ansible's home and logs."""
    return topology.state_dir / "work"


def workload_archive_path(topology: Topology) -> Path:
    """The app's code as the deploy ships it to the hosts."""
    return work_dir(topology) / "workload.tar.gz"


def drained_path(topology: Topology) -> Path:
    """Which app hosts an operator drained (infra.drained reads and writes it)."""
    return topology.state_dir / "ops" / "drained.json"


def pulumi_dir(topology: Topology) -> Path:
    """The file:// backend of the stack (its Pulumi state, encrypted secrets inside)."""
    return topology.state_dir / "pulumi"


def pulumi_home(topology: Topology) -> Path:
    """PULUMI_HOME: the CLI's plugins and credentials, apart from the checkout and from
    other Pulumi projects of this user."""
    return topology.state_dir / "pulumi-home"
