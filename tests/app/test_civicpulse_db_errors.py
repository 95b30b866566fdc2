"""Which table a database error names (db_errors.concerns_table), without a database."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from civicpulse.core.db_errors import concerns_table

AUDIT = "civicpulse_audit_event"


def wrapped(message: str, table_name: str | None = None) -> Exception:
    """A Django-style wrapper whose __cause__ carries psycopg-like diagnostics."""
    cause = Exception(message)
    cause.diag = SimpleNamespace(table_name=table_name, message_primary=message)
    exc = Exception(message)
    exc.__cause__ = cause
    return exc


@pytest.mark.parametrize(("error", "expected"), [
    (wrapped('new row for relation "civicpulse_audit_event" violates check constraint "x"',
             AUDIT), True),
    (wrapped("permission denied for table civicpulse_audit_event"), True),
    (wrapped('relation "civicpulse_audit_event" does not exist'), True),
    (wrapped('column "x" of relation "civicpulse_audit_event" does not exist'), True),
    (wrapped("permission denied for table civicpulse_user"), False),
    (wrapped('duplicate key value violates unique constraint "civicpulse_user_username_key"',
             "civicpulse_user"), False),
    (wrapped('relation "civicpulse_audit_event_archive" does not exist'), False),
    (wrapped("canceling statement due to statement timeout"), False),
    (Exception("server closed the connection unexpectedly"), False),
    (Exception("permission denied for table civicpulse_audit_event"), True),
])
def test_concerns_table(error: Exception, expected: bool) -> None:
    assert concerns_table(error, AUDIT) is expected
