"""The engine's own database access: reconciliation reads and the pool-exhaustion fault.

Through PgBouncer (transaction mode) with psycopg 3: `prepare_threshold=None`, since
PgBouncer 1.18 cannot route prepared statements (DESIGN §2). The connection parameters,
password included, come from `infra.connections` (the app's role).
"""

from __future__ import annotations

from typing import Any, Literal

from gameday.reconcile import AuditRow, UserRow
from infra.connections import APP, AUDIT_TABLE, USERS_TABLE, pg_conninfo
from infra.topology import Topology


def conninfo(topology: Topology, via: Literal["pgbouncer", "postgresql"] = "pgbouncer",
             application_name: str = "civicpulse-gameday",
             connect_timeout: int = 3, at: tuple[str, int] | None = None) -> dict[str, Any]:
    """`at`: where this machine reaches `via` (a target's endpoint), if not its address."""
    info = pg_conninfo(topology, topology.one(via), APP, application_name=application_name,
                       connect_timeout=connect_timeout)
    if at is not None:
        info.update(host=at[0], port=at[1])
    return info


def connect(topology: Topology, via: Literal["pgbouncer", "postgresql"] = "pgbouncer",
            application_name: str = "civicpulse-gameday",
            at: tuple[str, int] | None = None) -> Any:
    import psycopg

    return psycopg.connect(**conninfo(topology, via, application_name, at=at),
                           autocommit=True, prepare_threshold=None)


_USERS_SQL = (f"SELECT id, username FROM {USERS_TABLE} "
              "WHERE starts_with(username, %s) ORDER BY id")
_EVENTS_SQL = (f"SELECT id, action, target_id, request_id FROM {AUDIT_TABLE} "
               "WHERE starts_with(request_id, %s) OR target_id = ANY(%s) ORDER BY id")


def fetch_run_rows(topology: Topology, prefix: str, at: tuple[str, int] | None = None
                   ) -> tuple[list[UserRow], list[AuditRow]]:
    """User rows whose username starts with the run's prefix, and the audit events that
    point at them or carry one of the run's request ids."""
    with connect(topology, application_name="civicpulse-gameday-reconcile", at=at) as conn:
        # One transaction: SET LOCAL lifts the app role's request-sized statement
        # timeout for this read only (a session SET would leak to other clients of
        # the same server connection behind PgBouncer's transaction pooling).
        with conn.transaction(), conn.cursor() as cur:
            cur.execute("SET LOCAL statement_timeout = 0")
            cur.execute(_USERS_SQL, [prefix])
            users = [UserRow(id=r[0], username=r[1]) for r in cur.fetchall()]
            cur.execute(_EVENTS_SQL, [prefix, [u.id for u in users]])
            events = [AuditRow(id=r[0], action=r[1], target_id=r[2], request_id=r[3])
                      for r in cur.fetchall()]
    return users, events
