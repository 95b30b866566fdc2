"""Connecting to the stack's PostgreSQL, PgBouncer and Redis with its own secrets.

One place knows which role logs in with which secret and how a client must be set up
for this stack: the health probes, the ops commands and the GameDay engine's database
access all build their connections here. Passwords are read from the stack's secret
files (`infra.paths.secrets_dir`) at connect time and never printed; a secret that
cannot be read raises the OSError of the read, which each caller words for its user.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from infra.paths import secrets_dir
from infra.secrets import read_secret
from infra.topology import Service, Topology


@dataclass(frozen=True)
class Role:
    """A database login of the stack: the user and the secret that holds its password."""

    user: str
    secret: str


#: The cluster's superuser: only it may terminate other roles' backends (ops commands).
SUPERUSER = Role("postgres", "postgres_superuser")
#: The application's role (the app, the health probe, the GameDay engine's reads).
APP = Role("civicpulse", "app_db")
#: PgBouncer's read-only admin console user (`stats_users`: SHOW, never PAUSE or KILL).
PGBOUNCER_STATS = Role("pgbouncer_stats", "pgbouncer_stats")

# The reference app's tables (app/civicpulse/core/models.py, fixed db_table names):
# what the GameDay reconciles and a restore counts.
USERS_TABLE = "civicpulse_user"
AUDIT_TABLE = "civicpulse_audit_event"


def stack_secret(topology: Topology, name: str) -> str:
    """One secret of the stack (OSError if it cannot be read: not deployed, not root)."""
    return read_secret(secrets_dir(topology), name)


def pg_conninfo(topology: Topology, service: Service, role: Role, *, dbname: str | None = None,
                application_name: str | None = None,
                connect_timeout: int = 3) -> dict[str, Any]:
    """psycopg connection parameters for `role` at `service` (PostgreSQL or PgBouncer);
    the database is the stack's own unless `dbname` says otherwise."""
    info: dict[str, Any] = {
        "host": service.address, "port": service.port,
        "dbname": dbname or topology.sizing.postgresql.database,
        "user": role.user,
        "password": stack_secret(topology, role.secret),
        "connect_timeout": connect_timeout,
    }
    if application_name is not None:
        info["application_name"] = application_name
    return info


def redis_client(topology: Topology, service: Service, timeout_s: float) -> redis.Redis:
    """A client of the stack's Redis that gives up after `timeout_s` and never retries:
    its callers (a probe, an operator) want to know at once that Redis does not answer."""
    return redis.Redis(host=service.address, port=service.port,
                       password=stack_secret(topology, "redis"),
                       socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                       retry=Retry(NoBackoff(), 0))


def first_line(exc: BaseException) -> str:
    """What a failed connection says, in one line: psycopg's messages run on with
    DETAIL and HINT lines that would break a table cell or a one-line error."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else repr(exc)
