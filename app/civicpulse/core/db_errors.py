"""Map database exceptions to the `kind` label of civicpulse_db_errors_total."""

from __future__ import annotations

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
