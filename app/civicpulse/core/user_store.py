"""User creation and lookup with hand-written SQL.

The ORM costs several CPU milliseconds per request; on a two-core host that is
the throughput ceiling, so the hot paths issue the few statements directly. The
SQL is portable between PostgreSQL and SQLite (>= 3.35 for RETURNING), except the
one-statement create below, which needs PostgreSQL's data-modifying CTEs.

Every round trip goes through PgBouncer, so the common create (no Idempotency-Key)
on PostgreSQL is ONE statement in autocommit instead of BEGIN, two INSERTs and
COMMIT: a single statement is atomic by itself, so the user and its audit event
are still written together or not at all.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from datetime import UTC, datetime

from django.db import DatabaseError, connection, transaction
from django.db.models import Model

from civicpulse.core import audit, cache, db_errors, metrics
from civicpulse.core.models import AuditEvent, User
from civicpulse.core.timestamps import iso_utc

# ON CONFLICT DO NOTHING makes a concurrent duplicate wait for the first writer's
# commit and then return no row, instead of raising and aborting the transaction.
_INSERT_USER = (
    "INSERT INTO civicpulse_user (username, email, created_at) VALUES (%s, %s, %s) "
    "ON CONFLICT (username) DO NOTHING RETURNING id"
)
_SELECT_USER = "SELECT id, username, email, created_at FROM civicpulse_user WHERE id = %s"
_CLAIM_KEY = (
    "INSERT INTO civicpulse_idempotency_key "
    "(key, request_fingerprint, response_status, response_body, created_at) "
    "VALUES (%s, %s, 0, '', %s) ON CONFLICT (key) DO NOTHING RETURNING key"
)
_STORED_RESPONSE = (
    "SELECT request_fingerprint, response_status, response_body "
    "FROM civicpulse_idempotency_key WHERE key = %s"
)
_SAVE_RESPONSE = (
    "UPDATE civicpulse_idempotency_key SET response_status = %s, response_body = %s "
    "WHERE key = %s"
)


class UsernameTaken(Exception):
    """The username already exists; nothing was written."""


class IdempotencyKeyReused(Exception):
    """The key was first used with a different request body."""


@dataclass(frozen=True)
class CreateResult:
    status: int
    body: str
    replayed: bool


def user_cache_key(user_id: int) -> str:
    return f"user:{user_id}"


def _column(model: type[Model], field: str) -> str:
    return connection.ops.quote_name(model._meta.get_field(field).column)


@functools.cache
def user_with_audit_sql() -> str:
    """One PostgreSQL statement that inserts the user and its audit event.

    Returns the new user's id, or no row when the username is taken: ON CONFLICT
    DO NOTHING makes a concurrent duplicate wait for the first writer's commit and
    then insert nothing, so the audit INSERT (fed only by the CTE's RETURNING)
    inserts nothing either. Parameters: username, email, created_at, action,
    request_id. Names come from the models, so a db_table change follows.
    """
    users = connection.ops.quote_name(User._meta.db_table)
    events = connection.ops.quote_name(AuditEvent._meta.db_table)
    return (
        f"WITH new_user AS ("
        f"INSERT INTO {users} ({_column(User, 'username')}, {_column(User, 'email')}, "
        f"{_column(User, 'created_at')}) VALUES (%s, %s, %s) "
        f"ON CONFLICT ({_column(User, 'username')}) DO NOTHING "
        f"RETURNING {_column(User, 'id')} AS user_id, {_column(User, 'created_at')} AS created_at) "
        f"INSERT INTO {events} ({_column(AuditEvent, 'action')}, "
        f"{_column(AuditEvent, 'target_id')}, {_column(AuditEvent, 'request_id')}, "
        f"{_column(AuditEvent, 'created_at')}) "
        f"SELECT %s, user_id, %s, created_at FROM new_user "
        f"RETURNING {_column(AuditEvent, 'target_id')}"
    )


def _user_body(user_id: int, username: str, email: str, created_at: datetime) -> str:
    return json.dumps({"id": user_id, "username": username, "email": email,
                       "created_at": created_at.isoformat()})


def _create_in_one_statement(username: str, email: str, request_id: str) -> CreateResult:
    """PostgreSQL without an idempotency key: one atomic statement, no BEGIN/COMMIT."""
    now = datetime.now(UTC)
    try:
        # Outside an atomic block Django's connection is in autocommit, so psycopg
        # sends the statement alone (no BEGIN/COMMIT) and PostgreSQL commits both
        # rows or neither.
        with connection.cursor() as cursor:
            cursor.execute(user_with_audit_sql(), [
                username, email, connection.ops.adapt_datetimefield_value(now),
                audit.USER_CREATED, request_id])
            row = cursor.fetchone()
    except DatabaseError as exc:
        # Only the statement as a whole can fail; count an audit failure when
        # PostgreSQL blames the audit table (constraint, privilege, schema), as the
        # two-statement path does when its audit INSERT fails. An outage or timeout
        # is a database error, not an audit one (see AppAuditWriteFailures.md).
        if db_errors.concerns_table(exc, AuditEvent._meta.db_table):
            metrics.AUDIT_FAILURES.inc()
        raise
    if row is None:
        raise UsernameTaken(username)
    # The statement has committed by the time it returned.
    metrics.USERS_CREATED.inc()
    metrics.AUDIT_WRITTEN.inc()
    return CreateResult(201, _user_body(row[0], username, email, now), replayed=False)


def create_user(username: str, email: str, request_id: str,
                idempotency_key: str | None = None, fingerprint: str = "") -> CreateResult:
    """Insert the user and its audit event atomically.

    Without an idempotency key on PostgreSQL that is one statement (see
    `user_with_audit_sql`); otherwise one transaction. With an idempotency key, the
    key row is claimed first in the same transaction: a concurrent duplicate blocks
    on it until this transaction ends, then either replays the stored response
    (commit) or proceeds itself (rollback).
    """
    if idempotency_key is None and connection.vendor == "postgresql":
        return _create_in_one_statement(username, email, request_id)
    now = datetime.now(UTC)
    db_now = connection.ops.adapt_datetimefield_value(now)
    with transaction.atomic(), connection.cursor() as cursor:
        if idempotency_key is not None:
            cursor.execute(_CLAIM_KEY, [idempotency_key, fingerprint, db_now])
            if cursor.fetchone() is None:
                cursor.execute(_STORED_RESPONSE, [idempotency_key])
                stored_fingerprint, status, body = cursor.fetchone()
                if stored_fingerprint != fingerprint:
                    raise IdempotencyKeyReused(idempotency_key)
                return CreateResult(status, body, replayed=True)

        cursor.execute(_INSERT_USER, [username, email, db_now])
        row = cursor.fetchone()
        if row is None:
            # Raising (not returning) rolls back the claimed idempotency key too.
            raise UsernameTaken(username)
        user_id = row[0]
        try:
            audit.record_user_created(cursor, user_id, request_id, db_now)
        except Exception:
            metrics.AUDIT_FAILURES.inc()
            raise
        body = _user_body(user_id, username, email, now)
        if idempotency_key is not None:
            cursor.execute(_SAVE_RESPONSE, [201, body, idempotency_key])
    # Counted only after COMMIT succeeded.
    metrics.USERS_CREATED.inc()
    metrics.AUDIT_WRITTEN.inc()
    return CreateResult(201, body, replayed=False)


def user_document(user_id: int) -> bytes | None:
    """The user's JSON body: from Redis if cached, else PostgreSQL (then cached)."""
    key = user_cache_key(user_id)
    cached = cache.fetch(key)
    if cached is not None:
        return cached
    with connection.cursor() as cursor:
        cursor.execute(_SELECT_USER, [user_id])
        row = cursor.fetchone()
    if row is None:
        return None
    body = json.dumps({"id": row[0], "username": row[1], "email": row[2],
                       "created_at": iso_utc(row[3])}).encode()
    cache.store(key, body)
    return body
