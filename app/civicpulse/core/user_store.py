"""User creation and lookup with hand-written SQL.

The ORM costs several CPU milliseconds per request; on a two-core host that is
the throughput ceiling, so the hot paths issue the few statements directly. The
SQL is portable between PostgreSQL and SQLite (>= 3.35 for RETURNING).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

from django.db import connection, transaction

from civicpulse.core import audit, cache, metrics
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


def create_user(username: str, email: str, request_id: str,
                idempotency_key: str | None = None, fingerprint: str = "") -> CreateResult:
    """Insert the user and its audit event in one transaction.

    With an idempotency key, the key row is claimed first in the same transaction:
    a concurrent duplicate blocks on it until this transaction ends, then either
    replays the stored response (commit) or proceeds itself (rollback).
    """
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
        body = json.dumps({"id": user_id, "username": username, "email": email,
                           "created_at": now.isoformat()})
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
