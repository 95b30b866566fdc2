"""Django DATABASES entry for the configured engine (PostgreSQL/PgBouncer or SQLite)."""

from __future__ import annotations

from typing import Any

from civicpulse.config import DatabaseConfig


def django_database(db: DatabaseConfig) -> dict[str, Any]:
    """Django DATABASES['default'] for the configured engine."""
    if db.engine == "sqlite":
        if not db.sqlite_tuned:
            # Django's defaults (DEFERRED transactions, rollback journal), kept
            # selectable to reproduce "database is locked" under concurrent writes.
            return {"ENGINE": "django.db.backends.sqlite3", "NAME": db.path, "OPTIONS": {}}
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": db.path,
            "OPTIONS": {
                # IMMEDIATE takes the write lock at BEGIN, so concurrent writers queue
                # on the busy timeout instead of failing on a lock upgrade mid-way;
                # WAL lets readers run beside the single writer.
                "transaction_mode": "IMMEDIATE",
                "timeout": 5,
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL",
            },
        }

    options = {
        # PgBouncer in transaction mode hands each transaction to any server
        # connection, so server-side prepared statements and cursors must be off.
        "prepare_threshold": None,
        "connect_timeout": db.connect_timeout,
        "application_name": "civicpulse",
    }
    if not db.pgbouncer and db.statement_timeout_ms:
        # Direct connections take the timeout as a startup parameter. PgBouncer
        # rejects `options`, and a session SET would leak across pooled clients,
        # so behind PgBouncer the timeout is a role setting applied by
        # `civicpulse-manage sync_db_role_settings` (see README).
        options["options"] = f"-c statement_timeout={db.statement_timeout_ms}"
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": db.name,
        "USER": db.user,
        "PASSWORD": db.password,
        "HOST": db.host,
        "PORT": str(db.port),
        "CONN_MAX_AGE": db.conn_max_age,
        "CONN_HEALTH_CHECKS": db.conn_max_age > 0,
        "DISABLE_SERVER_SIDE_CURSORS": True,
        "OPTIONS": options,
    }
