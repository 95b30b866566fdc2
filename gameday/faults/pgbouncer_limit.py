"""PgBouncer's max_client_conn lowered at runtime, to just above the clients it has.

The admin console cannot do it on our stacks: `admin_users` is empty on purpose (the
pgbouncer role: "nobody gets admin rights on the console"), and the stats user may only
SHOW. So the fault changes the limit the way PgBouncer's own RELOAD does: it rewrites
the `max_client_conn` line of the deployed pgbouncer.ini and sends SIGHUP, which makes
PgBouncer re-read the file (no restart, no client dropped). That is the drift a hand
edit or a stray `SET` leaves behind until the next deploy.

The new limit is `floor(used / fill)` (at least used + 1), from SHOW LISTS'
used_clients (without the fault's own console connection), so that the clients
PgBouncer already has fill about `fill` of it: the PgbouncerMaxClientConnNearLimit
threshold (80 %) is crossed while a new client or two still gets in. Past the limit
PgBouncer refuses new clients; existing ones are kept.

Rollback: the rollback log holds the file's original text (pgbouncer.ini holds no
secret: passwords are in userlist.txt) before the file is touched; the undo writes it
back and sends SIGHUP. Cleanup's sweep, which needs no log, puts the stack config's
max_client_conn back if the file says otherwise. `invoke deploy` restores it too.
"""

from __future__ import annotations

import asyncio
import math
import re
import signal
from pathlib import Path
from typing import Any

from gameday.faults.base import UndoContext, undo_handler, write_like
from gameday.faults.config_file import ConfigFileFault, deployed_files, restore_original
from infra.paths import host_dir
from infra.topology import Service, Topology

SETTING = re.compile(r"^(?P<lead>\s*max_client_conn\s*=\s*)(?P<value>\d+)(?P<trail>.*)$",
                     re.M)


def config_path(topology: Topology, service: Service) -> Path:
    return host_dir(topology, service.host) / "pgbouncer" / "pgbouncer.ini"


def configured_limit(text: str) -> int | None:
    match = SETTING.search(text)
    return int(match["value"]) if match else None


def with_limit(text: str, limit: int) -> str:
    """pgbouncer.ini's text with `max_client_conn = limit` (exactly one such line)."""
    matches = list(SETTING.finditer(text))
    if len(matches) != 1:
        raise ValueError(f"expected one max_client_conn line in pgbouncer.ini, found "
                         f"{len(matches)}")
    return SETTING.sub(lambda m: f"{m['lead']}{limit}{m['trail']}", text, count=1)


def lowered_limit(used: int, fill: float) -> int:
    """The lowest limit at which `used` clients are at most `fill` of it, and never
    below used + 1 (one new client still gets in)."""
    return max(used + 1, math.floor(used / fill))


def reload(ctx_target: Any, service: Service) -> list[int]:
    """SIGHUP to PgBouncer's main process: it re-reads pgbouncer.ini."""
    return ctx_target.kill(service, signal.SIGHUP)


@undo_handler("restore_pgbouncer_config")
def _restore(ctx: UndoContext, undo: dict[str, Any]) -> str:
    svc, _path = restore_original(ctx, undo, config_path, PgbouncerClientLimit.file_label)
    pids = reload(ctx.target, svc)
    return (f"pgbouncer.ini restored (max_client_conn {configured_limit(undo['content'])}), "
            f"SIGHUP to {pids}")


def restore_configured_limits(topology: Topology, target: Any) -> list[str]:
    """For cleanup without a log: every PgBouncer whose file differs from the stack
    config's max_client_conn gets it back (and a SIGHUP)."""
    wanted = topology.sizing.pgbouncer.max_client_conn
    done = []
    for svc, path, text in deployed_files(topology, topology.instances("pgbouncer"),
                                          config_path):
        found = configured_limit(text)
        if found is None or found == wanted:
            continue
        write_like(path, with_limit(text, wanted))
        reload(target, svc)
        done.append(f"{svc.name}@{svc.host}: max_client_conn {found} → {wanted} (stack "
                    "config), SIGHUP")
    return done


class PgbouncerClientLimit(ConfigFileFault):
    kind = "pgbouncer_client_limit"
    target_service = "pgbouncer"
    restore_handler = "restore_pgbouncer_config"
    file_label = "pgbouncer.ini"
    config_path = staticmethod(config_path)

    def reload(self, service: Service) -> list[int]:
        return reload(self.ctx.target, service)

    def plan(self) -> list[str]:
        svc = self.service
        return [f"lower max_client_conn of {svc.name}@{svc.host} from "
                f"{self.ctx.topology.sizing.pgbouncer.max_client_conn} to the clients it has "
                f"/ {self.params.fill:g} in {self.path}, "
                f"SIGHUP; {self.spec.duration_s:g}s"]

    def preflight(self) -> list[str]:
        return super().preflight() or self.missing_file()

    async def inject(self) -> None:
        original = self.read_original()
        svc = self.service
        used = await asyncio.to_thread(self._used_clients)
        limit = lowered_limit(used, self.params.fill)
        lowered = with_limit(original, limit)  # fails before anything is written
        pids = await self.push(f"max_client_conn of {svc.name}@{svc.host} lowered to {limit}",
                               original, lowered)
        self.ctx.log(f"max_client_conn {configured_limit(original)} → {limit} "
                     f"({used} clients in use), SIGHUP to {pids}")

    def _used_clients(self) -> int:
        import psycopg
        from psycopg import ClientCursor

        from infra.connections import PGBOUNCER_STATS, pg_conninfo

        info = pg_conninfo(self.ctx.topology, self.service, PGBOUNCER_STATS, dbname="pgbouncer")
        with psycopg.connect(**info, autocommit=True, cursor_factory=ClientCursor) as conn:
            rows = conn.execute("SHOW LISTS").fetchall()
        lists = {str(name): int(value) for name, value in rows}
        return max(0, lists["used_clients"] - 1)  # not counting this connection
