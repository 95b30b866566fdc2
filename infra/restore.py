"""Restore the stack's database from its pgBackRest repository, with clients paused.

The sequence is the one an SRE would type, each step through the Target and the
tools' own commands:

1. PgBouncer `PAUSE` (through its Unix socket, as its own OS user: the console's
   admin without any admin login): in-flight transactions finish, new ones wait in
   PgBouncer (up to query_wait_timeout) instead of failing against a stopped server.
2. stop PostgreSQL (supervisord); move its data directory aside
   (`<data>.before-restore`, same volume: a rename, nothing copied, nothing deleted);
3. `pgbackrest restore` on the database host (latest: every archived WAL segment, or
   `--type=time` to a moment, then promote), start PostgreSQL, wait for recovery to
   end (pg_is_in_recovery() false), count users and audit events;
4. PgBouncer `RESUME`: always, on success and on failure.

A restore that fails after step 2 puts the data directory back and starts PostgreSQL
again, so a failed restore leaves the database as it found it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from infra.backups import BackupError, BadBackupRequest, archive_current_wal, repository
from infra.catalog import SERVICE_KINDS
from infra.connections import AUDIT_TABLE, SUPERUSER, USERS_TABLE, first_line, pg_conninfo
from infra.paths import PGBACKREST_STANZA, pgbackrest_conf, pgbouncer_dir, postgresql_data_dir
from infra.stack_lock import StackLock
from infra.targets.base import Target
from infra.topology import Service, Topology

#: Where the data directory found at restore time is kept (beside it, same volume).
ASIDE_SUFFIX = ".before-restore"
#: Where a failed restore's data directory goes when the kept one is put back.
FAILED_SUFFIX = ".failed-restore"
#: Bounds: WAL replay of the lab's data takes seconds; of a large cluster, much longer.
RESTORE_TIMEOUT_S = 6 * 3600
RECOVERY_TIMEOUT_S = 3600
PAUSE_TIMEOUT_S = 30

Progress = Callable[[str], None]


class RestoreError(BackupError):
    """The restore failed; the message says at which step and what was put back."""


@dataclass
class Restored:
    target: str
    #: The backup set pgBackRest started from (the newest one before the target).
    backup: str
    aside: str | None
    duration_s: float
    #: Seconds clients were paused in PgBouncer (0: PgBouncer was not running).
    paused_s: float
    users: int
    audit_events: int
    users_without_audit: int


def parse_target_time(text: str) -> datetime:
    """`--to`: an ISO 8601 time; without an offset it is UTC."""
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise BadBackupRequest(f"--to {text!r}: not a time (ISO 8601, e.g. "
                               "2026-12-07T21:40:00+00:00; UTC when no offset)") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def check_target_time(when: datetime, oldest_consistent: float | None, now: float) -> None:
    """A point-in-time target must lie between the oldest backup's end (the first
    moment any backup can restore) and now."""
    if oldest_consistent is None:
        raise BadBackupRequest("the repository holds no backup yet: take one with "
                               "`invoke backup --type full`")
    stamp = when.timestamp()
    if stamp < oldest_consistent:
        first = datetime.fromtimestamp(oldest_consistent, UTC).isoformat(timespec="seconds")
        raise BadBackupRequest(f"--to {when.isoformat()}: before the oldest backup's end "
                               f"({first}); nothing can restore to that moment")
    if stamp > now:
        raise BadBackupRequest(f"--to {when.isoformat()}: in the future; use --latest to "
                               "replay every archived write")


def restore_argv(topology: Topology, host: str, when: datetime | None) -> list[str]:
    """`pgbackrest restore` on the database host (it fetches from the repository host)."""
    argv = ["/usr/bin/pgbackrest", f"--config={pgbackrest_conf(topology, host)}",
            f"--stanza={PGBACKREST_STANZA}", "restore"]
    if when is not None:
        # pgBackRest picks the newest backup that ended before the target itself.
        argv += ["--type=time", f"--target={when.isoformat(sep=' ')}",
                 "--target-action=promote"]
    return argv


def data_present(topology: Topology, target: Target) -> bool:
    """Whether the database host still has a cluster (PG_VERSION) in its data directory."""
    pg = topology.one("postgresql")
    probe = target.run(pg.host, ["test", "-f", str(postgresql_data_dir(topology, pg.host)
                                                   / "PG_VERSION")], timeout_s=10)
    return probe.ok


def restore(topology: Topology, target: Target, when: datetime | None,
            progress: Progress = lambda _m: None) -> Restored:
    """Restore the latest state (when None) or the state at `when`; see the module."""
    repo = repository(topology, target)
    if not repo.backups:
        raise BadBackupRequest("the repository holds no backup yet: take one with "
                               "`invoke backup --type full`")
    if repo.status_code != 0:
        raise RestoreError(f"the repository is not healthy ({repo.status}); "
                           "see `invoke backups`")
    if when is not None:
        check_target_time(when, min(b.stopped for b in repo.backups), time.time())
    candidates = [b for b in repo.backups if when is None or b.stopped <= when.timestamp()]
    backup = max(candidates, key=lambda b: b.stopped)
    pg = topology.one("postgresql")
    data = postgresql_data_dir(topology, pg.host)
    aside = data.with_name(data.name + ASIDE_SUFFIX)
    wanted = when.isoformat(timespec="seconds") if when else "latest (all archived WAL)"
    result = Restored(target=wanted, backup=backup.label, aside=None, duration_s=0.0,
                      paused_s=0.0, users=0, audit_events=0, users_without_audit=0)

    step = progress
    started = time.monotonic()
    with StackLock(topology.state_dir).acquire_unless_held_by_caller(), \
            _clients_paused(topology, target, step) as paused:
        if target.state(pg).running:
            # With clients paused nothing new commits: once the current segment is in
            # the repository, every acknowledged write can be restored (archive_timeout
            # alone would leave up to its length of them on this host only).
            try:
                archive_current_wal(topology, target)
            except BackupError as exc:
                raise RestoreError(f"cannot archive the current WAL ({exc}); nothing was "
                                   "changed: see PostgresqlWalArchivingFailing") from None
            step("pgbackrest check: the WAL up to now is in the repository")
        target.stop(pg)
        step(f"PostgreSQL stopped on {pg.host}")
        moved = _move_aside(topology, target, pg.host, data, aside, step)
        result.aside = str(aside) if moved else None
        try:
            _run_restore(topology, target, pg, data, when, backup.label, step)
            target.start(pg)
            counts = _wait_promoted(topology, pg, step)
        except Exception as exc:
            step(f"restore failed: {exc}")
            _put_back(topology, target, pg, data, aside if moved else None, step)
            raise RestoreError(f"restore to {wanted} failed ({exc}); "
                               + ("the previous data directory is back and PostgreSQL "
                                  "was started on it" if moved else
                                  "there was no data directory to put back")) from exc
        result.users, result.audit_events, result.users_without_audit = counts
        result.paused_s = paused()
    result.duration_s = time.monotonic() - started
    return result


def _console(topology: Topology, target: Target, svc: Service, command: str,
             timeout_s: float) -> None:
    """One admin command on PgBouncer's console: psql over its Unix socket as its OS
    user, whom PgBouncer admits as `pgbouncer` without a password."""
    argv = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h",
            str(pgbouncer_dir(topology, svc.host)), "-p", str(svc.port), "-U", "pgbouncer",
            "-d", "pgbouncer", "-c", command]
    result = target.run(svc.host, argv, timeout_s=timeout_s,
                        user=SERVICE_KINDS["pgbouncer"].user,
                        env={"PGCONNECT_TIMEOUT": "5", "PATH": "/usr/bin:/bin"})
    if not result.ok:
        why = "timed out" if result.timed_out else (result.stderr or result.stdout).strip()
        raise RestoreError(f"PgBouncer on {svc.host}: {command} failed: {why}")


@contextlib.contextmanager
def _clients_paused(topology: Topology, target: Target, step: Progress
                    ) -> Iterator[Callable[[], float]]:
    database = topology.sizing.postgresql.database
    bouncers = [s for s in topology.instances("pgbouncer") if target.state(s).running]
    paused: list[Service] = []
    since = time.monotonic()
    try:
        for svc in bouncers:
            _console(topology, target, svc, f"PAUSE {database}", PAUSE_TIMEOUT_S)
            paused.append(svc)
            step(f"PgBouncer on {svc.host}: clients paused (PAUSE {database})")
        if not bouncers:
            step("PgBouncer is not running: no clients to pause")
        yield lambda: time.monotonic() - since if paused else 0.0
    finally:
        for svc in paused:
            _console(topology, target, svc, f"RESUME {database}", PAUSE_TIMEOUT_S)
            step(f"PgBouncer on {svc.host}: clients resumed "
                 f"after {time.monotonic() - since:.1f}s")


def _move_aside(topology: Topology, target: Target, host: str, data: Path, aside: Path,
                step: Progress) -> bool:
    if not exists_on(target, host, data):
        step(f"no data directory at {data}: restoring into a new one")
        return False
    if exists_on(target, host, aside):
        # One copy is kept: the one from right before this restore.
        checked_command(target, host, ["rm", "-rf", "--one-file-system", str(aside)], "remove")
        step(f"removed the copy kept by the previous restore ({aside})")
    checked_command(target, host, ["mv", str(data), str(aside)], "move aside")
    step(f"data directory moved aside to {aside}")
    return True


def _run_restore(topology: Topology, target: Target, pg: Service, data: Path,
                 when: datetime | None, label: str, step: Progress) -> None:
    owner = pg.kind.user
    checked_command(target, pg.host, ["install", "-d", "-m", "0700", "-o", owner, "-g", owner,
                               str(data)], "create the data directory")
    step(f"pgbackrest restore from {label} "
         f"({'to ' + when.isoformat(timespec='seconds') if when else 'latest'})")
    t = time.monotonic()
    result = target.run(pg.host, restore_argv(topology, pg.host, when),
                        timeout_s=RESTORE_TIMEOUT_S, user=owner)
    if not result.ok:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise RestoreError("pgbackrest restore failed: " + (detail[-1] if detail else
                                                            "no output"))
    step(f"pgbackrest restore wrote the data directory in {time.monotonic() - t:.1f}s")


def _wait_promoted(topology: Topology, pg: Service, step: Progress) -> tuple[int, int, int]:
    """Wait until PostgreSQL has replayed the WAL and accepts writes; count the data."""
    t = time.monotonic()
    deadline = t + RECOVERY_TIMEOUT_S
    last = "not tried"
    info = pg_conninfo(topology, pg, SUPERUSER, application_name="infra.restore")
    while time.monotonic() < deadline:
        try:
            with psycopg.connect(**info, autocommit=True) as conn:
                if not conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]:  # type: ignore[index]
                    step(f"WAL replayed and promoted in {time.monotonic() - t:.1f}s")
                    wake_checkpointer(conn)
                    return _counts(conn)
                last = "still in recovery"
        except psycopg.Error as exc:
            last = first_line(exc)
        time.sleep(0.5)
    raise RestoreError(f"PostgreSQL did not finish recovery in {RECOVERY_TIMEOUT_S}s "
                       f"({last})")


def wake_checkpointer(conn: psycopg.Connection[Any]) -> None:
    """Make PostgreSQL honour archive_timeout now, after a start or a promotion.

    PostgreSQL 15's checkpointer computes its first sleep while the server is still
    starting up (recovery in progress), leaves archive_timeout out of it and sleeps
    up to checkpoint_timeout (5 min): measured here, no WAL switch for minutes after a
    start, so a volume lost then took 15 s of writes instead of 5. A reload (SIGHUP)
    wakes it; from then on it wakes every archive_timeout.
    """
    conn.execute("SELECT pg_reload_conf()")


def wake_checkpointer_of(topology: Topology) -> None:
    """wake_checkpointer through a new superuser connection (PostgreSQL must be up)."""
    info = pg_conninfo(topology, topology.one("postgresql"), SUPERUSER,
                       application_name="infra.restore", connect_timeout=5)
    with psycopg.connect(**info, autocommit=True) as conn:
        wake_checkpointer(conn)


def _counts(conn: psycopg.Connection[Any]) -> tuple[int, int, int]:
    row = conn.execute(
        f"SELECT (SELECT count(*) FROM {USERS_TABLE}),"
        f" (SELECT count(*) FROM {AUDIT_TABLE} WHERE action = 'user.created'),"
        f" (SELECT count(*) FROM {USERS_TABLE} u WHERE NOT EXISTS (SELECT 1 FROM"
        f" {AUDIT_TABLE} a WHERE a.action = 'user.created' AND a.target_id = u.id))"
    ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


def _put_back(topology: Topology, target: Target, pg: Service, data: Path,
              aside: Path | None, step: Progress) -> None:
    with contextlib.suppress(Exception):
        target.stop(pg)
    if aside is None:
        return
    put_back_data_directory(topology, target, pg, data, aside)
    step(f"data directory put back from {aside}; PostgreSQL started on its previous data")


def exists_on(target: Target, host: str, path: Path) -> bool:
    return target.run(host, ["test", "-e", str(path)], timeout_s=10).ok


def put_back_data_directory(topology: Topology, target: Target, pg: Service, data: Path,
                            kept: Path) -> None:
    """Start PostgreSQL on the data directory kept at `kept` again: what is at `data`
    now (a failed or partial restore) goes to `<data>.failed-restore`, replacing an
    older one. Shared by a failed restore and the lost-volume fault's rollback."""
    target.stop(pg)
    if exists_on(target, pg.host, data):
        failed = data.with_name(data.name + FAILED_SUFFIX)
        checked_command(target, pg.host, ["rm", "-rf", "--one-file-system", str(failed)],
                 "remove an older failed restore")
        checked_command(target, pg.host, ["mv", str(data), str(failed)], "move the failed restore")
    checked_command(target, pg.host, ["mv", str(kept), str(data)], "put the data directory back")
    target.start(pg)
    deadline = time.monotonic() + 60
    while not target.health(pg).ok:
        if time.monotonic() > deadline:
            raise RestoreError(f"postgresql@{pg.host} not healthy 60s after its data "
                               "directory was put back")
        time.sleep(0.5)
    wake_checkpointer_of(topology)


def checked_command(target: Target, host: str, argv: list[str], what: str) -> None:
    """A host command that must succeed (RestoreError naming `what` otherwise)."""
    result = target.run(host, argv, timeout_s=600)
    if not result.ok:
        raise RestoreError(f"{host}: cannot {what} ({' '.join(argv)}): "
                           f"{(result.stderr or result.stdout).strip() or 'timed out'}")
