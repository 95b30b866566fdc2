"""Connection-pool exhaustion: long transactions hold every PgBouncer server connection.

We open `default_pool_size + reserve_pool_size` client connections through PgBouncer as
the app's database user (same database and user, hence the same pool) and keep each
one inside a transaction that sleeps. The app's requests then queue in PgBouncer
(`cl_waiting`) until `query_wait_timeout` and fail.

Each sleep is shorter than PgBouncer's `query_timeout` (which would cancel it and end
the hold) and repeated inside one transaction, so the server connection stays
assigned. `SET LOCAL statement_timeout = 0` lifts the app role's default for these
transactions only. If the engine dies, its sockets close and every hold ends after
the current sleep (less than query_timeout); the undo handler also terminates the
backends by application_name over a direct PostgreSQL connection.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from gameday import database
from gameday.faults.base import Fault, UndoContext, undo_handler

HOLD_APP_NAME = "civicpulse-gameday-pool-hold"


@undo_handler("terminate_backends")
def _terminate(ctx: UndoContext, undo: dict[str, Any]) -> str:
    import psycopg

    # Only our own role's backends: PgBouncer's auth_user connection takes over the
    # application_name of the client that logged in last (a holder's, measured), and
    # one backend of another role makes the whole statement fail with "must be a
    # member of the role whose process is being terminated".
    sql = ("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
           "WHERE usename = current_user AND pid <> pg_backend_pid() AND "
           "(application_name = %s OR (pid = ANY(%s) AND query LIKE 'SELECT pg_sleep%%'))")
    last_error: Exception | None = None
    for via in ("postgresql", "pgbouncer"):
        try:
            with database.connect(ctx.topology, via=via,  # type: ignore[arg-type]
                                  application_name="civicpulse-gameday-cleanup") as conn:
                row = conn.execute(sql, [undo["application_name"], undo.get("pids", [])]
                                   ).fetchone()
            return f"terminated {row[0] if row else 0} holding backend(s) via {via}"
        except psycopg.Error as exc:
            last_error = exc
    raise RuntimeError(f"could not reach the database to end the holding transactions: "
                       f"{last_error}")


class PoolExhaustion(Fault):
    kind = "pool_exhaustion"
    target_service = "pgbouncer"

    @property
    def connections(self) -> int:
        sizing = self.ctx.topology.sizing.pgbouncer
        return self.params.connections or sizing.default_pool_size + sizing.reserve_pool_size

    @property
    def sleep_chunk_s(self) -> float:
        timeout = self.ctx.topology.sizing.pgbouncer.query_timeout_s
        return max(0.5, timeout - 1.5) if timeout else 5.0

    def plan(self) -> list[str]:
        svc = self.service
        return [f"hold {self.connections} server connections of {svc.name}@{svc.host} "
                f"({svc.endpoint}) with transactions sleeping in {self.sleep_chunk_s:g}s "
                f"steps for {self.spec.duration_s:g}s"]

    async def inject(self) -> None:
        self._stop = asyncio.Event()
        self._pids: list[int] = []
        self._conns: list[Any] = []
        name = f"{HOLD_APP_NAME}-{self.ctx.run_id}"
        self._entry = self.record_change(
            f"{self.connections} transactions holding {self.service.name} server connections",
            {"handler": "terminate_backends", "application_name": name, "pids": []})
        ready = asyncio.Semaphore(0)
        self._tasks = [asyncio.create_task(self._hold(name, ready))
                       for _ in range(self.connections)]
        # Wait (bounded) until the holds have their server connections; the app may
        # already be using some, so not all of them get one at once.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 15
        got = 0
        while got < self.connections and loop.time() < deadline:
            try:
                await asyncio.wait_for(ready.acquire(), timeout=deadline - loop.time())
                got += 1
            except TimeoutError:
                break
        self.ctx.rollback_log.update_undo(self._entry, pids=list(self._pids))
        self.applied(self._entry)
        self.ctx.log(f"holding {got}/{self.connections} PgBouncer server connections")

    async def _hold(self, application_name: str, ready: asyncio.Semaphore) -> None:
        import psycopg

        info = database.conninfo(self.ctx.topology, "pgbouncer", application_name,
                                 connect_timeout=10)
        try:
            conn = await psycopg.AsyncConnection.connect(**info, prepare_threshold=None)
        except psycopg.Error as exc:
            self.ctx.log(f"pool hold: connect failed: {exc}")
            return
        self._conns.append(conn)
        try:
            async with conn.transaction():
                await conn.execute("SET LOCAL statement_timeout = 0")
                cur = await conn.execute("SELECT pg_backend_pid()")
                row = await cur.fetchone()
                if row:
                    self._pids.append(int(row[0]))
                ready.release()
                # Bounded: the fault's own duration plus a margin, whatever happens.
                for _ in range(int((self.spec.duration_s + 60) / self.sleep_chunk_s) + 1):
                    if self._stop.is_set():
                        break
                    await conn.execute("SELECT pg_sleep(%s)", [self.sleep_chunk_s])
                raise _EndHold
        except _EndHold:
            pass
        except (psycopg.Error, asyncio.CancelledError):
            pass
        finally:
            with contextlib.suppress(Exception):
                await conn.close()

    async def rollback(self) -> list[str]:
        if hasattr(self, "_stop"):
            self._stop.set()
            for conn in list(self._conns):
                with contextlib.suppress(Exception):
                    conn.cancel()
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        return await super().rollback()


class _EndHold(Exception):
    """Leave the transaction block by rolling back (nothing was written)."""
