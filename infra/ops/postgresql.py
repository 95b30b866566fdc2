"""PostgreSQL sessions: who is connected, which transactions are old, and ending them.

We connect as the cluster's superuser (`postgres`) over TCP to the database host,
with the password from the stack's `postgres_superuser` secret: pg_hba allows it
from loopback with SCRAM, and only a superuser may terminate other roles' backends.
Going around PgBouncer is deliberate: when the pool is exhausted, these are the
commands that must still get through.
"""

from __future__ import annotations

from typing import Any

import psycopg

from infra.connections import SUPERUSER, Role, first_line, pg_conninfo
from infra.ops.outcome import OpsError, Outcome, unreadable_secret
from infra.ops.select import one_instance
from infra.topology import Service, Topology

#: Which sessions `kill-idle-tx --state` may end.
STATES = {
    "idle-in-transaction": "starts_with(state, 'idle in transaction')",
    "active": "state = 'active'",
    "any": "state IS NOT NULL",
}

_SESSIONS = """
SELECT pid, usename, application_name, client_addr::text, state,
       extract(epoch FROM now() - xact_start)::int AS xact_age_s,
       extract(epoch FROM now() - state_change)::int AS state_age_s,
       wait_event_type, left(regexp_replace(query, '\\s+', ' ', 'g'), 80) AS query
  FROM pg_stat_activity
 WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() AND datname = %s
 ORDER BY xact_start NULLS LAST
"""
_COUNTS = """
SELECT coalesce(state, '(none)'), count(*),
       current_setting('max_connections')::int
  FROM pg_stat_activity WHERE backend_type = 'client backend'
 GROUP BY 1 ORDER BY 2 DESC
"""


def role_conninfo(topology: Topology, service: Service, role: Role,
                  **params: Any) -> dict[str, Any]:
    """psycopg's connection parameters for `role` (PostgreSQL or PgBouncer's console),
    or the ops error saying its secret cannot be read."""
    try:
        return pg_conninfo(topology, service, role, **params)
    except OSError as exc:
        raise unreadable_secret(topology, role.secret, exc) from None


def connect(topology: Topology, timeout_s: int = 3) -> psycopg.Connection[Any]:
    svc = one_instance(topology, "postgresql")
    info = role_conninfo(topology, svc, SUPERUSER, application_name="infra.ops",
                         connect_timeout=timeout_s)
    try:
        return psycopg.connect(**info, autocommit=True)
    except psycopg.Error as exc:
        raise OpsError(f"cannot connect to PostgreSQL at {svc.endpoint} on {svc.host} as "
                       f"{SUPERUSER.user}: {first_line(exc)}; is it up? (python -m infra.ops "
                       f"status --stack {topology.stack} --service postgresql)") from None


def activity(topology: Topology, limit: int = 20) -> Outcome:
    """Client sessions by state, then the oldest open transactions first."""
    with connect(topology) as conn:
        counts = conn.execute(_COUNTS).fetchall()
        cur = conn.execute(_SESSIONS, [topology.sizing.postgresql.database])
        names = [d.name for d in cur.description or []]
        rows = [list(r) for r in cur.fetchall()]
    outcome = Outcome(title=f"sessions in {topology.sizing.postgresql.database} "
                            f"(oldest transaction first, at most {limit})",
                      columns=names, rows=rows[:limit])
    total = sum(n for _, n, _ in counts)
    limit_conns = counts[0][2] if counts else topology.sizing.postgresql.max_connections
    outcome.note(f"client connections: {total} of max_connections {limit_conns} ("
                 + ", ".join(f"{state}: {n}" for state, n, _ in counts) + ")")
    return outcome


def default_age_s(topology: Topology) -> int:
    """PgBouncer cancels any single query after query_timeout, and the app's transactions
    are a few short statements: one open longer than that is not normal app traffic."""
    return topology.sizing.pgbouncer.query_timeout_s or 30


def terminate(conn: psycopg.Connection[Any], victims: list[tuple],
              dry_run: bool) -> list[list[Any]]:
    """pg_terminate_backend() on the pid (first column) of each victim row, unless
    dry_run; the rows with a result column added."""
    rows = []
    for pid, *rest in victims:
        result = "dry run"
        if not dry_run:
            done = conn.execute("SELECT pg_terminate_backend(%s)", [pid]).fetchone()
            result = "terminated" if done and done[0] else "already gone"
        rows.append([pid, *rest, result])
    return rows


def kill_transactions(topology: Topology, older_than_s: int | None = None,
                      state: str = "idle-in-transaction", dry_run: bool = False) -> Outcome:
    """pg_terminate_backend() on client sessions of the app database whose transaction
    is older than `older_than_s` (default: PgBouncer's query_timeout) and whose state
    matches. Only client backends of the application database are considered: never
    autovacuum, replication or ourselves."""
    if older_than_s is None:
        older_than_s = default_age_s(topology)
    if state not in STATES:
        raise OpsError(f"--state must be one of {', '.join(STATES)}, not {state!r}")
    if older_than_s < 1:
        raise OpsError("--older-than must be at least 1 second")
    query = f"""
        SELECT pid, usename, application_name, state,
               extract(epoch FROM now() - xact_start)::int AS xact_age_s,
               left(regexp_replace(query, '\\s+', ' ', 'g'), 80) AS query
          FROM pg_stat_activity
         WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
           AND datname = %s AND {STATES[state]}
           AND xact_start < now() - make_interval(secs => %s)
         ORDER BY xact_start"""
    with connect(topology) as conn:
        victims = conn.execute(query, [topology.sizing.postgresql.database,
                                       older_than_s]).fetchall()
        outcome = Outcome(title=f"{'would terminate' if dry_run else 'terminated'}: {state} "
                                f"sessions with a transaction older than {older_than_s}s",
                          columns=["pid", "user", "application", "state", "xact_age_s",
                                   "query", "result"],
                          rows=terminate(conn, victims, dry_run))
    if not victims:
        outcome.note("no matching session: nothing to do")
    return outcome


def pgbouncer_server_pids(topology: Topology, timeout_s: int = 3) -> set[int]:
    """The PostgreSQL backends PgBouncer holds (SHOW SERVERS' remote_pid, as the
    read-only stats user): every other client backend bypasses the pool."""
    from psycopg import ClientCursor

    from infra.connections import PGBOUNCER_STATS

    pids: set[int] = set()
    for svc in topology.instances("pgbouncer"):
        info = role_conninfo(topology, svc, PGBOUNCER_STATS, dbname="pgbouncer",
                             connect_timeout=timeout_s)
        try:
            with psycopg.connect(**info, autocommit=True, cursor_factory=ClientCursor) as conn:
                cur = conn.execute("SHOW SERVERS")
                names = [d.name for d in cur.description or []]
                at = names.index("remote_pid")
                pids |= {int(row[at]) for row in cur.fetchall() if row[at]}
        except psycopg.Error as exc:
            raise OpsError(f"cannot list PgBouncer's server connections at {svc.endpoint}: "
                           f"{first_line(exc)}; without them every session would look "
                           "direct, so nothing is terminated") from None
    return pids


def direct_candidates(sessions: list[tuple], pooled: set[int], idle_for_s: int) -> list[tuple]:
    """(pid, usename, application_name, state, idle_s) rows that bypass PgBouncer and
    sat idle (not in a transaction) for at least `idle_for_s`."""
    return [row for row in sessions
            if row[0] not in pooled and row[3] == "idle" and (row[4] or 0) >= idle_for_s]


def kill_direct_clients(topology: Topology, idle_for_s: int = 2,
                        dry_run: bool = False) -> Outcome:
    """pg_terminate_backend() on idle sessions of the app's role that bypass PgBouncer
    (their pid is none of PgBouncer's server connections): a script or a misconfigured
    host holding connection slots. Sessions in a transaction are left to kill-idle-tx."""
    if idle_for_s < 1:
        raise OpsError("--idle-for must be at least 1 second")
    pooled = pgbouncer_server_pids(topology)
    query = """
        SELECT pid, usename, application_name, state,
               extract(epoch FROM now() - state_change)::int AS idle_s
          FROM pg_stat_activity
         WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
           AND datname = %s AND usename = %s
         ORDER BY state_change"""
    from infra.connections import APP

    with connect(topology) as conn:
        sessions = conn.execute(query, [topology.sizing.postgresql.database,
                                        APP.user]).fetchall()
        victims = direct_candidates(sessions, pooled, idle_for_s)
        outcome = Outcome(title=f"{'would terminate' if dry_run else 'terminated'}: idle "
                                f"sessions of {APP.user} bypassing PgBouncer for "
                                f">= {idle_for_s}s",
                          columns=["pid", "user", "application", "state", "idle_s", "result"],
                          rows=terminate(conn, victims, dry_run))
    outcome.note(f"{len(sessions)} session(s) of {APP.user}, {len(pooled)} held by PgBouncer, "
                 f"{len(victims)} direct and idle >= {idle_for_s}s")
    return outcome
