"""The pool-exhaustion fault's undo against the real PostgreSQL of the deployed stack.

PgBouncer's auth_user connection takes over the application_name of the client that
logged in last, so after the fault it can carry the holders' name. The undo must end
the holders (the app role's backends) and leave that connection alone; it once failed
the whole rollback with "must be a member of the role whose process is being
terminated" instead (GameDay pgbouncer-pool-exhaustion on lab, 2026-11-27).
"""

from __future__ import annotations

import psycopg
import pytest

from gameday import database
from gameday.faults.base import UndoContext
from gameday.faults.pool import _terminate
from infra.paths import secrets_dir
from infra.secrets import read_secret

pytestmark = [pytest.mark.slow, pytest.mark.deploy]

NAME = "civicpulse-gameday-pool-hold-undo-test"
AUTH_ROLE = "pgbouncer_auth"  # playbooks/roles/pgbouncer/defaults: pgbouncer_auth_user


def test_undo_ends_the_app_roles_holders_and_spares_other_roles(deployed_stack):
    pg = deployed_stack.one("postgresql")
    other = psycopg.connect(host=pg.address, port=pg.port, user=AUTH_ROLE,
                            dbname=deployed_stack.sizing.postgresql.database,
                            password=read_secret(secrets_dir(deployed_stack), AUTH_ROLE),
                            application_name=NAME, autocommit=True, connect_timeout=3)
    holder = psycopg.connect(**database.conninfo(deployed_stack, "postgresql", NAME),
                             autocommit=True)
    try:
        outcome = _terminate(UndoContext(deployed_stack, None),  # type: ignore[arg-type]
                             {"application_name": NAME, "pids": []})
        assert outcome == "terminated 1 holding backend(s) via postgresql"
        with pytest.raises(psycopg.OperationalError):
            holder.execute("SELECT 1")
        assert other.execute("SELECT current_user").fetchone() == (AUTH_ROLE,)
    finally:
        holder.close()
        other.close()
