"""The stack's backups, through pgBackRest's own commands on the backup host.

pgBackRest runs `backup` and `info` on the repository host only, as the repository's
owner; the Target runs them there (on the local target: this machine, through
runuser). What this module adds is the reading: `pgbackrest info --output=json` as
rows an operator can scan, and errors that say what to do.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from infra.catalog import SERVICE_KINDS
from infra.paths import PGBACKREST_STANZA, pgbackrest_conf
from infra.targets.base import Target
from infra.topology import Topology

BACKUP_TYPES = ("full", "diff", "incr")
#: A backup of the lab's data takes seconds; a large cluster hours. Bounded anyway.
BACKUP_TIMEOUT_S = 6 * 3600


class BackupError(Exception):
    """A backup command failed or cannot run; the message says why."""


class BadBackupRequest(BackupError):
    """The request itself is wrong (e.g. an unknown --type); nothing was run."""


class NoBackupHost(BadBackupRequest):
    """The stack config has no backup repository (no host runs pgbackrest)."""


@dataclass(frozen=True)
class Backup:
    label: str
    type: str
    started: float
    stopped: float
    #: Bytes the backup added to the repository (compressed, deduplicated with its prior).
    repo_bytes: int
    #: Bytes of the cluster it restores.
    database_bytes: int
    wal_start: str
    wal_stop: str
    prior: str | None

    @property
    def duration_s(self) -> float:
        return self.stopped - self.started


@dataclass(frozen=True)
class Repository:
    stanza: str
    status_code: int
    status: str
    backups: tuple[Backup, ...]
    #: The WAL archive's range: from the oldest backup's start to the newest segment.
    wal_min: str | None
    wal_max: str | None

    @property
    def latest(self) -> Backup | None:
        return max(self.backups, key=lambda b: b.stopped) if self.backups else None


def pgbackrest_argv(topology: Topology, *args: str) -> list[str]:
    """A pgBackRest command on the backup host, with that host's config and the stanza."""
    host = repository_host(topology)
    return ["/usr/bin/pgbackrest", f"--config={pgbackrest_conf(topology, host)}",
            f"--stanza={PGBACKREST_STANZA}", *args]


def repository_host(topology: Topology) -> str:
    found = topology.instances("pgbackrest")
    if not found:
        raise NoBackupHost(f"stack {topology.stack!r} keeps no backups: no host in "
                           f"{topology.source} runs pgbackrest (see README, Backups)")
    return found[0].host


def parse_info(text: str) -> Repository:
    """`pgbackrest info --output=json` (one stanza) as a Repository."""
    try:
        stanzas: list[dict[str, Any]] = json.loads(text)
        stanza = stanzas[0]
    except (ValueError, IndexError, TypeError) as exc:
        raise BackupError(f"pgbackrest info printed no stanza ({exc}): {text[:200]!r}") \
            from None
    backups = tuple(
        Backup(label=b["label"], type=b["type"], started=b["timestamp"]["start"],
               stopped=b["timestamp"]["stop"], repo_bytes=b["info"]["repository"]["delta"],
               database_bytes=b["info"]["size"], wal_start=b["archive"]["start"],
               wal_stop=b["archive"]["stop"], prior=b.get("prior"))
        for b in stanza.get("backup", []))
    archives = stanza.get("archive") or [{}]
    return Repository(stanza=stanza["name"], status_code=stanza["status"]["code"],
                      status=stanza["status"]["message"], backups=backups,
                      wal_min=archives[0].get("min"), wal_max=archives[0].get("max"))


def _run(topology: Topology, target: Target, args: list[str], timeout_s: float) -> str:
    host = repository_host(topology)
    result = target.run(host, pgbackrest_argv(topology, *args), timeout_s=timeout_s,
                        user=SERVICE_KINDS["pgbackrest"].user)
    if result.timed_out:
        raise BackupError(f"pgbackrest {args[0]} on {host} did not finish in {timeout_s:g}s")
    if not result.ok:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise BackupError(f"pgbackrest {args[0]} on {host} failed (exit {result.exit_code}): "
                          + (detail[-1] if detail else "no output"))
    return result.stdout


def repository(topology: Topology, target: Target) -> Repository:
    """What the repository holds now."""
    return parse_info(_run(topology, target, ["info", "--output=json"], timeout_s=120))


def take_backup(topology: Topology, target: Target, kind: str = "incr"
                ) -> tuple[Backup, float]:
    """Take a backup of this type now; returns it and the seconds it took.

    pgBackRest turns a diff or incr into a full when no full backup exists yet, and
    refuses to run beside another backup (the schedule's): both are reported as they are.
    """
    if kind not in BACKUP_TYPES:
        raise BadBackupRequest(f"--type {kind}: not a backup type "
                               f"(one of: {', '.join(BACKUP_TYPES)})")
    before = {b.label for b in repository(topology, target).backups}
    started = time.monotonic()
    _run(topology, target, ["backup", f"--type={kind}"], timeout_s=BACKUP_TIMEOUT_S)
    elapsed = time.monotonic() - started
    new = [b for b in repository(topology, target).backups if b.label not in before]
    if not new:
        raise BackupError("pgbackrest backup succeeded but the repository shows no new backup")
    return new[-1], elapsed


def archive_current_wal(topology: Topology, target: Target) -> None:
    """`pgbackrest check`: switch the WAL segment on the running database and wait until
    it is in the repository, so that everything committed until now can be restored."""
    _run(topology, target, ["check"], timeout_s=120)
