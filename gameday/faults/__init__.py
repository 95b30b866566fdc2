"""Fault kinds. Each module implements one family; `fault_class` maps a kind to it."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gameday.faults.base import Fault

_MODULES = {
    "process_crash": ("gameday.faults.process", "ProcessCrash"),
    "process_hang": ("gameday.faults.process", "ProcessHang"),
    "service_stop": ("gameday.faults.process", "ServiceStop"),
    "network_partition": ("gameday.faults.network", "NetworkPartition"),
    "packet_loss": ("gameday.faults.network", "PacketLoss"),
    "latency": ("gameday.faults.latency", "Latency"),
    "pool_exhaustion": ("gameday.faults.pool", "PoolExhaustion"),
    "disk_full": ("gameday.faults.disk", "DiskFull"),
    "cpu_saturation": ("gameday.faults.cpu", "CpuSaturation"),
    "load_surge": ("gameday.faults.surge", "LoadSurge"),
    "long_transaction": ("gameday.faults.transactions", "LongTransaction"),
    "deadlocks": ("gameday.faults.transactions", "Deadlocks"),
    "direct_connections": ("gameday.faults.transactions", "DirectConnections"),
    "redis_fill": ("gameday.faults.cache_fill", "RedisFill"),
    "redis_connection_flood": ("gameday.faults.cache_clients", "RedisConnectionFlood"),
    "pgbouncer_client_limit": ("gameday.faults.pgbouncer_limit", "PgbouncerClientLimit"),
    "config_push": ("gameday.faults.config_push", "ConfigPush"),
    "data_directory_lost": ("gameday.faults.data_loss", "DataDirectoryLost"),
    "operator_delete": ("gameday.faults.data_delete", "OperatorDelete"),
}


def fault_class(kind: str) -> type[Fault]:
    module, name = _MODULES[kind]
    return getattr(importlib.import_module(module), name)


def load_all() -> None:
    """Import every fault module so that their undo handlers are registered."""
    for module, _ in set(_MODULES.values()):
        importlib.import_module(module)
