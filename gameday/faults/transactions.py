"""Session faults on PostgreSQL: a transaction left open, transactions that deadlock,
and idle clients that bypass PgBouncer until the connection slots run short.

Both are a second client of the database doing what the app never does, over direct
connections to PostgreSQL as the app's role (a manual session or a batch job, not the
app's pool: PgBouncer's query_timeout would cancel a statement held through it). They
touch no data: the long transaction only takes a transaction id, the deadlocks are
between two transaction-level advisory locks, which PostgreSQL's deadlock detector
treats like row locks (it aborts one side after `deadlock_timeout` and counts it in
`pg_stat_database.deadlocks`).

Rollback: the undo is `terminate_backends` by the fault's application_name (the
handler the pool-exhaustion fault uses), recorded before the first connection opens.
If the engine dies, its sockets close and PostgreSQL ends the sessions at once (an idle
backend reads EOF); `idle_in_transaction_session_timeout` ends a forgotten one anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
from typing import Any

from gameday import database
from gameday.faults import pool  # noqa: F401 - registers the terminate_backends undo
from gameday.faults.base import Fault

LONG_TX_APP_NAME = "civicpulse-gameday-long-tx"
DEADLOCK_APP_NAME = "civicpulse-gameday-deadlock"
DIRECT_APP_NAME = "civicpulse-gameday-direct"


async def _connect(fault: Fault, application_name: str) -> Any:
    import psycopg

    info = database.conninfo(fault.ctx.topology, "postgresql", application_name,
                             connect_timeout=10)
    conn = await psycopg.AsyncConnection.connect(**info, autocommit=True,
                                                 prepare_threshold=None)
    # The app role's request-sized statement timeout must not end the experiment: this
    # session is ours alone (a direct connection), so a session setting is fine.
    await conn.execute("SET statement_timeout = 0")
    return conn


async def _backend_pid(conn: Any) -> int:
    row = await (await conn.execute("SELECT pg_backend_pid()")).fetchone()
    return int(row[0]) if row else 0


class _Journaled(Fault):
    """Log-first: the terminate-by-application_name undo before any connection opens;
    the sessions' backend pids go into it once they are open, and rollback closes them
    (`_conns`) before the undo runs."""

    target_service = "postgresql"
    app_name_base = "civicpulse-gameday"

    @property
    def application_name(self) -> str:
        return f"{self.app_name_base}-{self.ctx.run_id}"

    def journal(self, what: str) -> None:
        """Record the undo for sessions doing `what` (as the fault's application_name)."""
        self._conns: list[Any] = []
        self._entry = self.record_change(
            f"{what} as {self.application_name}",
            {"handler": "terminate_backends", "application_name": self.application_name,
             "pids": []})

    async def open_session(self) -> Any:
        """A direct session as the fault's application_name (rollback closes it)."""
        conn = await _connect(self, self.application_name)
        self._conns.append(conn)
        return conn

    def sessions_open(self, pids: list[int]) -> None:
        """The sessions' backend pids into the undo; the entry is applied."""
        self.ctx.rollback_log.update_undo(self._entry, pids=pids)
        self.applied(self._entry)

    async def rollback(self) -> list[str]:
        for conn in getattr(self, "_conns", []):
            with contextlib.suppress(Exception):
                await conn.close()
        self._conns = []
        return await super().rollback()


class LongTransaction(_Journaled):
    """A session that begins a transaction, takes a transaction id and then sits idle in
    it for `duration_s` (bounded by that plus a margin even if nobody ends it)."""

    kind = "long_transaction"
    app_name_base = LONG_TX_APP_NAME

    def plan(self) -> list[str]:
        svc = self.service
        return [f"open a transaction on {svc.name}@{svc.host} ({svc.endpoint}) as "
                f"{self.application_name} and leave it idle in transaction for "
                f"{self.spec.duration_s:g}s"]

    async def inject(self) -> None:
        self.journal(f"a transaction held open for {self.spec.duration_s:g}s")
        conn = await self.open_session()
        await conn.execute("BEGIN")
        cur = await conn.execute("SELECT pg_backend_pid(), txid_current()")
        row = await cur.fetchone()
        pid = int(row[0]) if row else 0
        self.sessions_open([pid])
        self.ctx.log(f"transaction {row[1] if row else '?'} open in backend {pid}, idle")

    async def rollback(self) -> list[str]:
        for conn in getattr(self, "_conns", []):
            # It may already be gone (the runbook or PostgreSQL ended it): that is the
            # point, not an error.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.execute("ROLLBACK"), timeout=5)
        return await super().rollback()


def advisory_keys(marker: str) -> tuple[int, int]:
    """Two distinct bigint advisory-lock keys, stable for one run (no clash with another
    run or stack)."""
    digest = hashlib.sha256(marker.encode()).digest()
    first = int.from_bytes(digest[:8], "big", signed=True)
    second = int.from_bytes(digest[8:16], "big", signed=True)
    return first, second if second != first else first ^ 1


class Deadlocks(_Journaled):
    """`params.deadlocks` rounds, `params.interval_s` apart within `duration_s`: session A
    locks k1, B locks k2, A waits for k2, B asks for k1: a cycle PostgreSQL breaks by
    aborting one of them."""

    kind = "deadlocks"
    app_name_base = DEADLOCK_APP_NAME

    def plan(self) -> list[str]:
        svc = self.service
        return [f"{self.params.deadlocks} deadlock(s) between two sessions on {svc.name}@"
                f"{svc.host} (advisory locks, no data touched), one every "
                f"{self.params.interval_s:g}s within {self.spec.duration_s:g}s"]

    async def inject(self) -> None:
        self.journal(f"{self.params.deadlocks} deadlocking transaction pair(s)")
        for _ in range(2):
            await self.open_session()
        self.sessions_open([await _backend_pid(conn) for conn in self._conns])
        self.detected = 0
        self.rounds = 0
        self._started = asyncio.get_running_loop().time()
        # The first round in inject (so a fault that cannot deadlock fails loudly), the
        # rest in the background, bounded by count and by the fault's duration.
        await self._round()
        self._task = asyncio.create_task(self._more())

    async def _round(self) -> None:
        import psycopg

        a, b = self._conns
        k1, k2 = advisory_keys(self.application_name)
        self.rounds += 1
        await a.execute("BEGIN")
        await a.execute("SELECT pg_advisory_xact_lock(%s)", [k1])
        await b.execute("BEGIN")
        await b.execute("SELECT pg_advisory_xact_lock(%s)", [k2])
        first = asyncio.create_task(a.execute("SELECT pg_advisory_xact_lock(%s)", [k2]))
        await asyncio.sleep(0.2)  # A waits first; B then closes the cycle
        second = asyncio.create_task(b.execute("SELECT pg_advisory_xact_lock(%s)", [k1]))
        done = await asyncio.wait_for(asyncio.gather(first, second, return_exceptions=True),
                                      timeout=30)
        found = sum(isinstance(r, psycopg.errors.DeadlockDetected) for r in done)
        for conn in (a, b):
            with contextlib.suppress(psycopg.Error):
                await conn.execute("ROLLBACK")
        self.detected += found
        unexpected = [r for r in done if isinstance(r, BaseException)
                      and not isinstance(r, psycopg.errors.DeadlockDetected)]
        self.ctx.log(f"deadlock round {self.rounds}: "
                     + ("PostgreSQL aborted one side (deadlock detected)" if found else
                        f"no deadlock detected ({unexpected[0] if unexpected else 'both got'}"
                        " their locks)"))
        if unexpected:
            raise RuntimeError(f"deadlock round {self.rounds} failed: {unexpected[0]}")

    async def _more(self) -> None:
        loop = asyncio.get_running_loop()
        end = self._started + self.spec.duration_s
        for _ in range(self.params.deadlocks - 1):
            if loop.time() + self.params.interval_s > end:
                break
            await asyncio.sleep(self.params.interval_s)
            try:
                await self._round()
            except Exception as exc:  # noqa: BLE001 - reported; rollback ends the sessions
                self.ctx.log(f"deadlock round failed: {type(exc).__name__}: {exc}")
                return

    async def rollback(self) -> list[str]:
        task = getattr(self, "_task", None)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        return await super().rollback()


def connections_needed(current: int, max_connections: int, fill: float) -> int:
    """How many more sessions put the cluster at `fill` of max_connections (never into
    the superuser-reserved slots: at most max_connections - 3 - current)."""
    goal = math.ceil(max_connections * fill)
    return max(0, min(goal, max_connections - 3) - current)


class DirectConnections(_Journaled):
    """Idle sessions of the app's role straight to PostgreSQL (a script, a host
    misconfigured to port 5432), opened until the cluster's connections reach `fill` of
    max_connections, held for `duration_s`. PgBouncer keeps the slots it has; a new
    server connection it needs beyond what is left fails ("too many clients")."""

    kind = "direct_connections"
    app_name_base = DIRECT_APP_NAME

    def plan(self) -> list[str]:
        svc = self.service
        return [f"open idle sessions to {svc.name}@{svc.host} ({svc.endpoint}) bypassing "
                f"PgBouncer until {self.params.fill:.0%} of max_connections "
                f"({self.ctx.topology.sizing.postgresql.max_connections}) is used, "
                f"{self.spec.duration_s:g}s"]

    async def inject(self) -> None:
        self.journal("direct sessions")
        probe = await self.open_session()
        row = await (await probe.execute(
            "SELECT count(*), current_setting('max_connections')::int "
            "FROM pg_stat_activity WHERE backend_type = 'client backend'")).fetchone()
        current, max_connections = (int(row[0]), int(row[1])) if row else (0, 100)
        wanted = connections_needed(current, max_connections, self.params.fill)
        opened, failed = 0, None
        for start in range(0, wanted, 10):  # ten at a time: SCRAM logins cost CPU
            batch = await asyncio.gather(*(_connect(self, self.application_name)
                                           for _ in range(min(10, wanted - start))),
                                         return_exceptions=True)
            for conn in batch:
                if isinstance(conn, BaseException):
                    failed = failed or conn
                else:
                    self._conns.append(conn)
                    opened += 1
            if failed:
                break
        pids = []
        for conn in self._conns:
            with contextlib.suppress(Exception):
                pids.append(await _backend_pid(conn))
        self.sessions_open(pids)
        self.ctx.log(f"{opened + 1} direct session(s) open ({current} client connections "
                     f"before, max_connections {max_connections})"
                     + (f"; stopped early: {failed}" if failed else ""))
