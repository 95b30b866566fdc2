"""Audit trail writes and reads (raw SQL; runs inside the caller's transaction)."""

from __future__ import annotations

from typing import Any

from django.db import connection

from civicpulse.core.timestamps import iso_utc

USER_CREATED = "user.created"

_INSERT = (
    "INSERT INTO civicpulse_audit_event (action, target_id, request_id, created_at) "
    "VALUES (%s, %s, %s, %s)"
)
_LIST = (
    "SELECT id, action, target_id, request_id, created_at FROM civicpulse_audit_event "
    "WHERE id > %s ORDER BY id LIMIT %s"
)


def record_user_created(cursor: Any, user_id: int, request_id: str, db_timestamp: Any) -> None:
    """Insert the `user.created` event with the caller's cursor (same transaction)."""
    cursor.execute(_INSERT, [USER_CREATED, user_id, request_id, db_timestamp])


def list_events(after: int, limit: int) -> list[dict[str, Any]]:
    """Events with id > after, ascending, at most `limit`."""
    with connection.cursor() as cursor:
        cursor.execute(_LIST, [after, limit])
        rows = cursor.fetchall()
    return [
        {"id": row[0], "action": row[1], "target_id": row[2], "request_id": row[3],
         "created_at": iso_utc(row[4])}
        for row in rows
    ]
