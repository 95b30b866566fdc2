"""The chaos report's write pattern, kept to reproduce its failure. NOT the API's path.

The report's backend created a user the way most Django code does: one
`transaction.atomic()` block with Django's default (deferred) transaction, an ORM
existence check first, then the user and its audit event through the ORM. On SQLite
with Django's defaults the read takes a SHARED lock; when two such transactions both
read and then try to write, neither can upgrade its lock, and SQLite fails one at once
with `database is locked` (the busy timeout does not help: waiting cannot resolve a
deadlock). That is the report's 60 % / 20 % / 0 % success at 5 / 10 / 20 users.

Served at POST /api/report-pattern/users/ only when the config says
`report_pattern: true` (the benchmark's deployments); the API's own create is
`user_store.create_user` (one statement on PostgreSQL).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from django.db import DatabaseError, IntegrityError, transaction

from civicpulse.core import audit, metrics
from civicpulse.core.models import AuditEvent, User

#: SQLite's lock errors, as the report quotes them; the benchmark counts them by name.
LOCK_MESSAGES = ("database is locked", "database table is locked")


class UsernameTaken(Exception):
    """The existence check (or the unique index, on a race) found the username."""


def lock_error(exc: DatabaseError) -> str | None:
    """The SQLite lock message an error carries, or None."""
    text = str(exc)
    return next((m for m in LOCK_MESSAGES if m in text), None)


def create_user_as_the_report_did(username: str, email: str, request_id: str) -> str:
    """Check, then create the user and its audit event in one atomic ORM block.

    Returns the new user's JSON body; raises UsernameTaken or DatabaseError.
    """
    now = datetime.now(UTC)
    try:
        with transaction.atomic():
            if User.objects.filter(username=username).exists():
                raise UsernameTaken(username)
            user = User.objects.create(username=username, email=email, created_at=now)
            AuditEvent.objects.create(action=audit.USER_CREATED, target_id=user.id,
                                      request_id=request_id, created_at=now)
    except IntegrityError:
        # A concurrent create of the same name passed the check too (PostgreSQL's
        # unique index makes the second one fail instead of writing a duplicate).
        raise UsernameTaken(username) from None
    metrics.USERS_CREATED.inc()
    metrics.AUDIT_WRITTEN.inc()
    return json.dumps({"id": user.id, "username": username, "email": email,
                       "created_at": now.isoformat()})
