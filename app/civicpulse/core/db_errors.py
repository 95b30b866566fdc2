"""Map database exceptions to the `kind` label of civicpulse_db_errors_total."""

from __future__ import annotations

import re

from django.db import DatabaseError, IntegrityError, OperationalError

from civicpulse.core import metrics

# query_canceled (statement_timeout) and lock_not_available (lock_timeout).
_TIMEOUT_SQLSTATES = frozenset({"57014", "55P03"})


def classify(exc: BaseException) -> str:
    if isinstance(exc, IntegrityError):
        return "integrity"
    cause = exc.__cause__
    if getattr(cause, "sqlstate", None) in _TIMEOUT_SQLSTATES:
        return "timeout"
    if isinstance(exc, OperationalError):
        # psycopg reports an expired connect_timeout only in the message text.
        return "timeout" if "timeout expired" in str(exc) else "operational"
    return "other"


def record(exc: DatabaseError) -> str:
    """Count the error and return its kind."""
    kind = classify(exc)
    metrics.DB_ERRORS.labels(kind=kind).inc()
    return kind


def concerns_table(exc: BaseException, table: str) -> bool:
    """Whether PostgreSQL's error names `table`.

    Constraint violations carry the table in the error's diagnostics; privilege and
    schema errors ("permission denied for table t", 'relation "t" does not exist',
    'column "c" of relation "t" ...') name it in the message. Connection errors and
    timeouts name no table.
    """
    diag = getattr(exc.__cause__, "diag", None)
    if diag is not None and diag.table_name == table:
        return True
    message = (diag.message_primary if diag is not None else None) or str(exc)
    return re.search(rf"(?<![\w$]){re.escape(table)}(?![\w$])", message) is not None
