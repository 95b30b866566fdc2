"""An operator's bad DELETE: a slice of the run's users and their audit events vanish.

The statement runs as the superuser (an operator's session, bypassing PgBouncer), in
one transaction that first copies the rows it deletes into a schema of ours
(`civicpulse_gameday_aside`): the deletion is real for the app, its metrics and its
alert, but the rollback can always put the rows back.

The moment just before the transaction (the database server's clock) is recorded
first and handed to the runbook as CP_INCIDENT_START: the point a restore goes back to.

The rollback decides by what it finds:
- the copy is gone: a point-in-time restore went back to before the deletion (the
  copy was made in the same transaction, so it went too): nothing to do;
- the copy is there: no restore happened (or it failed); the rows are inserted back
  (ON CONFLICT DO NOTHING: a partial earlier undo is fine) and the copy dropped.
"""

from __future__ import annotations

import asyncio
import re
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from gameday.faults.base import Fault, UndoContext, undo_handler
from infra.connections import AUDIT_TABLE, SUPERUSER, USERS_TABLE, pg_conninfo
from infra.topology import Topology

ASIDE_SCHEMA = "civicpulse_gameday_aside"
_SAFE_NAME = re.compile(r"^[a-z0-9_]{1,40}$")


def _connect(topology: Topology) -> psycopg.Connection[Any]:
    info = pg_conninfo(topology, topology.one("postgresql"), SUPERUSER,
                       application_name="civicpulse-gameday-operator", connect_timeout=5)
    return psycopg.connect(**info)


def aside_tables(run_key: str) -> tuple[sql.Composed, sql.Composed]:
    if not _SAFE_NAME.match(run_key):
        raise ValueError(f"not a run key: {run_key!r}")
    schema = sql.Identifier(ASIDE_SCHEMA)
    return (sql.SQL("{}.{}").format(schema, sql.Identifier(f"users_{run_key}")),
            sql.SQL("{}.{}").format(schema, sql.Identifier(f"audit_{run_key}")))


@undo_handler("undelete_rows")
def _undelete(ctx: UndoContext, undo: dict[str, Any]) -> str:
    users, audit = aside_tables(undo["run_key"])
    with _connect(ctx.topology) as conn:
        found = conn.execute("SELECT to_regclass(%s)", (f"{ASIDE_SCHEMA}.users_{undo['run_key']}",)
                             ).fetchone()
        if found is None or found[0] is None:
            return "no copy of the deleted rows left: a restore went back to before the DELETE"
        back_users = conn.execute(sql.SQL(
            "INSERT INTO {} SELECT * FROM {} ON CONFLICT DO NOTHING").format(
                sql.Identifier(USERS_TABLE), users)).rowcount
        back_audit = conn.execute(sql.SQL(
            "INSERT INTO {} SELECT * FROM {} ON CONFLICT DO NOTHING").format(
                sql.Identifier(AUDIT_TABLE), audit)).rowcount
        conn.execute(sql.SQL("DROP TABLE {}, {}").format(audit, users))
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} RESTRICT").format(
            sql.Identifier(ASIDE_SCHEMA)))
    return f"no restore: put back {back_users} users and {back_audit} audit events"


class OperatorDelete(Fault):
    kind = "operator_delete"
    instantaneous = True
    target_service = "postgresql"
    needs_backups = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.incident_start: datetime | None = None

    @property
    def run_key(self) -> str:
        return re.sub(r"[^a-z0-9_]", "_", self.ctx.run_id.lower())[:40]

    def plan(self) -> list[str]:
        return [f"as the superuser, DELETE every {self.params.every_nth}th user of the run "
                "(by id) and its audit event, after copying them to "
                f"{ASIDE_SCHEMA}; CP_INCIDENT_START = the moment before"]

    def runbook_env(self) -> dict[str, str]:
        return {"CP_INCIDENT_START": self.incident_start.isoformat()} \
            if self.incident_start else {}

    async def inject(self) -> None:
        self.require_preflight()
        prefix = getattr(self.ctx.load, "prefix", None)
        if not prefix:
            raise RuntimeError("operator_delete deletes the run's own users: it needs the "
                               "scenario's load running")
        entry = self.record_change(
            f"DELETE of every {self.params.every_nth}th user with prefix {prefix} and its "
            f"audit events (copied to {ASIDE_SCHEMA} first)",
            {"handler": "undelete_rows", "run_key": self.run_key})
        deleted = await asyncio.to_thread(self._delete, prefix)
        self.applied(entry)
        point = self.incident_start.isoformat() if self.incident_start else "?"
        self.ctx.log(f"operator DELETE: {deleted[0]} users, {deleted[1]} audit events "
                     f"(restore point {point})")

    def _delete(self, prefix: str) -> tuple[int, int]:
        users, audit = aside_tables(self.run_key)
        with _connect(self.ctx.topology) as conn:
            row = conn.execute("SELECT clock_timestamp()").fetchone()
            assert row is not None
            conn.commit()
            self.incident_start = row[0]
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(
                sql.Identifier(ASIDE_SCHEMA)))
            conn.execute(sql.SQL(
                "CREATE TABLE {} AS SELECT * FROM {} WHERE starts_with(username, %s)"
                " AND id %% %s = 0").format(users, sql.Identifier(USERS_TABLE)),
                (prefix, self.params.every_nth))
            conn.execute(sql.SQL(
                "CREATE TABLE {} AS SELECT * FROM {} WHERE target_id IN (SELECT id FROM {})"
                " AND action = 'user.created'").format(audit, sql.Identifier(AUDIT_TABLE),
                                                       users))
            n_audit = conn.execute(sql.SQL("DELETE FROM {} WHERE id IN (SELECT id FROM {})")
                                   .format(sql.Identifier(AUDIT_TABLE), audit)).rowcount
            n_users = conn.execute(sql.SQL("DELETE FROM {} WHERE id IN (SELECT id FROM {})")
                                   .format(sql.Identifier(USERS_TABLE), users)).rowcount
            conn.commit()
        return n_users, n_audit
