"""Users vs audit rows written by one point, counted in the database itself.

Each point writes usernames with a prefix of its own, so the counts are exact even on
a stack that already holds data or takes other traffic. The audit count joins on the
user id, so a user row without its `user.created` event shows as users > audit.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any, Protocol

import psycopg

from infra.connections import APP, pg_conninfo
from infra.topology import Topology

_MAX_ID = "SELECT coalesce(max(id), 0) FROM civicpulse_user"
_USERS = "SELECT count(*) FROM civicpulse_user WHERE id > {p} AND username LIKE {p}"
_AUDIT = (
    "SELECT count(*) FROM civicpulse_audit_event a JOIN civicpulse_user u "
    "ON u.id = a.target_id WHERE a.action = 'user.created' AND u.id > {p} "
    "AND u.username LIKE {p}"
)


def like_prefix(prefix: str) -> str:
    """LIKE pattern for names starting with `prefix` (which must hold no wildcard)."""
    if any(ch in prefix for ch in "%_\\"):
        raise ValueError(f"username prefix {prefix!r} must not contain LIKE wildcards")
    return prefix + "%"


class RowCounter(Protocol):
    def max_user_id(self) -> int: ...
    def counts(self, prefix: str, after_id: int) -> tuple[int, int]: ...
    def close(self) -> None: ...


class _SqlCounter:
    """The two counts over one connection kind; subclasses run a one-value query."""

    #: The driver's parameter placeholder.
    placeholder = "?"

    def _one(self, sql: str, params: list[Any] | None = None) -> int:
        raise NotImplementedError

    def max_user_id(self) -> int:
        return self._one(_MAX_ID)

    def counts(self, prefix: str, after_id: int) -> tuple[int, int]:
        params = [after_id, like_prefix(prefix)]
        return (self._one(_USERS.format(p=self.placeholder), params),
                self._one(_AUDIT.format(p=self.placeholder), params))


class PostgresCounter(_SqlCounter):
    """Through PgBouncer, like the app: transaction pooling, so no prepared statements."""

    placeholder = "%s"

    def __init__(self, topology: Topology) -> None:
        self.conn: psycopg.Connection[Any] = psycopg.connect(
            **pg_conninfo(topology, topology.one("pgbouncer"), APP, connect_timeout=5,
                          application_name="civicpulse-bench"),
            prepare_threshold=None, autocommit=True)

    def _one(self, sql: str, params: list[Any] | None = None) -> int:
        row = self.conn.execute(sql, params).fetchone()
        return int(row[0]) if row else 0

    def close(self) -> None:
        self.conn.close()


class SqliteCounter(_SqlCounter):
    """Reads the peer's database file directly, read-only."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _one(self, sql: str, params: list[Any] | None = None) -> int:
        # A fresh read-only connection per query: never holds a lock between points.
        conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=10)
        try:
            row = conn.execute(sql, params or []).fetchone()
            return int(row[0]) if row else 0
        finally:
            conn.close()

    def close(self) -> None:
        pass
