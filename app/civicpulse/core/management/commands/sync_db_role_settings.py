"""Store the configured statement timeout as a PostgreSQL role default.

Behind PgBouncer in transaction mode a session-level SET would stick to whichever
server connection ran it and leak to other clients, and PgBouncer refuses the
`options` startup parameter. A role default (ALTER ROLE ... SET) is applied by
PostgreSQL itself to every new server session PgBouncer opens for this role.
A role may set its own defaults for user-settable parameters, so the app's own
database user can run this; run it after `migrate` on every deploy.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from civicpulse.config import get_config


class Command(BaseCommand):
    help = "ALTER ROLE CURRENT_USER SET statement_timeout from database.statement_timeout_ms."

    def handle(self, *args: Any, **options: Any) -> None:
        db = get_config().database
        if db.engine != "postgresql":
            raise CommandError(f"database.engine is {db.engine!r}; only postgresql has roles")
        with connection.cursor() as cursor:
            # Parameters cannot be bound in utility statements; the value is a
            # validated int, so formatting it in is safe.
            cursor.execute(
                f"ALTER ROLE CURRENT_USER SET statement_timeout = {int(db.statement_timeout_ms)}")
        self.stdout.write(
            f"statement_timeout = {db.statement_timeout_ms} ms set for the database role "
            "(applies to new server sessions)")
