"""PgBouncer's admin console: SHOW POOLS (and the other read-only SHOW views).

We log in as the stats user (`pgbouncer_stats`, in `stats_users`): it may run SHOW
but not PAUSE/RELOAD/KILL, so this command cannot change PgBouncer by mistake. The
console speaks only the simple query protocol and rejects transactions, hence
autocommit and psycopg's ClientCursor (client-side binding, no prepared statements).
"""

from __future__ import annotations

import psycopg
from psycopg import ClientCursor

from infra.connections import PGBOUNCER_STATS, first_line
from infra.ops.outcome import OpsError, Outcome
from infra.ops.postgresql import role_conninfo
from infra.ops.select import one_instance
from infra.topology import Topology

#: Read-only views worth showing on call; the key is what `--show` accepts.
VIEWS = ("pools", "stats", "lists", "databases", "clients", "servers", "config")
#: The columns of SHOW POOLS that matter when clients queue.
POOL_COLUMNS = ("database", "user", "cl_active", "cl_waiting", "sv_active", "sv_idle",
                "sv_used", "sv_login", "maxwait", "pool_mode")


def show(topology: Topology, view: str = "pools", host: str | None = None,
         timeout_s: int = 3) -> Outcome:
    """Run `SHOW <view>` on PgBouncer's admin console and return it as a table."""
    if view not in VIEWS:
        raise OpsError(f"--show must be one of {', '.join(VIEWS)}, not {view!r}")
    svc = one_instance(topology, "pgbouncer", host)
    info = role_conninfo(topology, svc, PGBOUNCER_STATS, dbname="pgbouncer",
                         connect_timeout=timeout_s)
    try:
        with psycopg.connect(**info, autocommit=True, cursor_factory=ClientCursor) as conn:
            cur = conn.execute(f"SHOW {view.upper()}")
            names = [d.name for d in cur.description or []]
            rows = cur.fetchall()
    except psycopg.Error as exc:
        outcome = Outcome(title=f"PgBouncer {svc.endpoint}")
        outcome.fail(f"cannot query PgBouncer's admin console at {svc.endpoint} on "
                     f"{svc.host}: {first_line(exc)}")
        return outcome
    keep = [i for i, n in enumerate(names) if view != "pools" or n in POOL_COLUMNS]
    outcome = Outcome(title=f"SHOW {view.upper()} on PgBouncer {svc.host} ({svc.endpoint})",
                      columns=[names[i] for i in keep],
                      rows=[[row[i] for i in keep] for row in rows])
    if view == "pools":
        waiting = sum(int(r["cl_waiting"]) for r in outcome.records()
                      if r.get("database") != "pgbouncer")
        if waiting:
            outcome.note(f"{waiting} client(s) are waiting for a server connection")
    return outcome
