"""Parameters of each fault kind: the part of a scenario's `fault:` that varies by kind.

Kept apart from the fault implementations so that validating a scenario file never
needs a stack, a database driver or root.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProcessCrashParams(Params):
    #: Signal sent to the service's main process (supervisord restarts it).
    signal: Literal["KILL", "SEGV", "ABRT", "TERM", "QUIT"] = "KILL"
    #: Rollback starts the program itself only if supervisord has not brought it
    #: back within this time; otherwise the engine would mask the self-healing it tests.
    restart_grace_s: float = Field(60, gt=0, le=600)


class ProcessHangParams(Params):
    #: SIGSTOP the whole process tree. The main process alone is not a hang for
    #: PostgreSQL: its backends are separate processes that keep serving (DESIGN §2).
    whole_tree: bool = True


class ServiceStopParams(Params):
    #: TERM: supervisorctl stop (graceful). KILL: SIGKILL the process tree first (a host
    #: crash: no graceful shutdown), then keep it down with supervisorctl stop.
    signal: Literal["TERM", "KILL"] = "TERM"


class NetworkPartitionParams(Params):
    #: Clients cut off from the target, by service (their system user): on loopback
    #: every client connects from 127.0.0.1, so only the uid tells them apart.
    from_services: list[str] = Field(default_factory=lambda: ["app"], min_length=1)
    #: Drop every port of the target's address, not only the service port.
    all_ports: bool = False


class PacketLossParams(Params):
    percent: int = Field(ge=1, le=100)
    from_services: list[str] = Field(default_factory=lambda: ["pgbouncer"], min_length=1)
    all_ports: bool = True


class LatencyParams(Params):
    latency_ms: int = Field(ge=1, le=30000)
    jitter_ms: int = Field(0, ge=0, le=30000)
    #: Which way the delay applies. downstream (server → client, Toxiproxy's default)
    #: adds `latency_ms` to every request/response round trip.
    direction: Literal["downstream", "upstream", "both"] = "downstream"
    from_services: list[str] = Field(default_factory=lambda: ["app"], min_length=1)


class PoolExhaustionParams(Params):
    #: Server connections to hold with long transactions. None: default_pool_size +
    #: reserve_pool_size from the stack config, i.e. every connection the app could get.
    connections: int | None = Field(None, ge=1, le=1000)


class DiskFullParams(Params):
    #: Directory on the volume to fill: relative to the target host's directory
    #: (`<state_dir>/hosts/<host>/`) or absolute. The default is PostgreSQL's data
    #: directory on its volume (sizing.postgresql.data_volume_mb).
    path: str = "postgresql/volume/data"
    #: Free space to leave for unprivileged users, in MiB (0: the service sees a full
    #: disk; only root may still use the filesystem's reserved blocks).
    leave_mb: int = Field(0, ge=0, le=1_000_000)
    #: Refuse to fill a volume larger than this: the fault is meant for a dedicated,
    #: size-limited data volume, never the machine's root filesystem.
    max_volume_gb: float = Field(16, gt=0, le=1024)


class CpuSaturationParams(Params):
    #: Busy-loop processes. None: one per CPU of the machine.
    workers: int | None = Field(None, ge=1, le=256)
    nice: int = Field(0, ge=0, le=19)
    #: Run the busy loops as the target service's user, as a runaway process of that
    #: service would.
    as_service_user: bool = True


class LoadSurgeParams(Params):
    users: int = Field(ge=1, le=2000)
    #: Spread the new users' start over this many seconds (0: all at once).
    ramp_s: float = Field(0, ge=0, le=600)


class LongTransactionParams(Params):
    """Held for the fault's duration_s (idle in transaction); no parameters yet."""


class DeadlocksParams(Params):
    #: How many deadlocks, one every interval_s, all within the fault's duration_s.
    deadlocks: int = Field(1, ge=1, le=20)
    interval_s: float = Field(5, ge=1, le=600)


class RedisFillParams(Params):
    #: Write filler keys until used_memory reaches this share of maxmemory.
    fill_percent: int = Field(95, ge=50, le=99)
    #: Size of each filler value (KiB): few big keys fill fast and are few to delete.
    value_kb: int = Field(1024, ge=1, le=8192)


class PgbouncerClientLimitParams(Params):
    #: The clients PgBouncer has fill this share of the lowered max_client_conn
    #: (PgbouncerMaxClientConnNearLimit fires above 0.8).
    fill: float = Field(0.85, gt=0.5, lt=1.0)


class ConfigPushParams(Params):
    #: broken: an unknown setting, the reload is refused (ConfigReloadFailed alerts).
    #: no_alertmanagers (prometheus): a valid file listing no Alertmanager, reloaded.
    change: Literal["broken", "no_alertmanagers"] = "broken"


class DirectConnectionsParams(Params):
    #: Open sessions until the cluster's client connections are this share of
    #: max_connections (PostgresqlTooManyConnections fires above 0.8).
    fill: float = Field(0.85, gt=0.5, lt=0.97)


class RedisConnectionFloodParams(Params):
    #: Slots left free while the connections are held (the exporter's scrape, the app).
    headroom: int = Field(3, ge=1, le=50)
    #: Connections tried past maxclients in the burst (each one refused).
    burst: int = Field(3, ge=1, le=50)


class DataDirectoryLostParams(Params):
    #: KILL: the whole process tree dies first, as when the volume vanishes under the
    #: server (nothing flushed or archived at shutdown: the honest recovery point).
    #: TERM: a clean stop first (the last WAL is written; a gentler loss).
    signal: Literal["KILL", "TERM"] = "KILL"
    #: How long the rollback waits for PostgreSQL to be healthy on a restored cluster
    #: before it concludes the restore failed and puts the moved data back.
    restored_grace_s: float = Field(60, gt=0, le=3600)


class OperatorDeleteParams(Params):
    #: Which of the run's users go: every n-th by id (with its audit event).
    every_nth: int = Field(5, ge=2, le=1000)


PARAMETERS: dict[str, type[Params]] = {
    "process_crash": ProcessCrashParams,
    "process_hang": ProcessHangParams,
    "service_stop": ServiceStopParams,
    "network_partition": NetworkPartitionParams,
    "packet_loss": PacketLossParams,
    "latency": LatencyParams,
    "pool_exhaustion": PoolExhaustionParams,
    "disk_full": DiskFullParams,
    "cpu_saturation": CpuSaturationParams,
    "load_surge": LoadSurgeParams,
    "long_transaction": LongTransactionParams,
    "deadlocks": DeadlocksParams,
    "direct_connections": DirectConnectionsParams,
    "redis_fill": RedisFillParams,
    "redis_connection_flood": RedisConnectionFloodParams,
    "pgbouncer_client_limit": PgbouncerClientLimitParams,
    "config_push": ConfigPushParams,
    "data_directory_lost": DataDirectoryLostParams,
    "operator_delete": OperatorDeleteParams,
}

#: Faults that are one action (a signal), not a condition held for `duration_s`.
INSTANTANEOUS = frozenset({"process_crash", "data_directory_lost", "operator_delete"})

FaultKindName = Literal[
    "process_crash", "process_hang", "service_stop", "network_partition", "packet_loss",
    "latency", "pool_exhaustion", "disk_full", "cpu_saturation", "load_surge",
    "long_transaction", "deadlocks", "redis_fill", "pgbouncer_client_limit",
    "config_push", "direct_connections", "redis_connection_flood", "data_directory_lost",
    "operator_delete",
]
