"""`python -m infra.ops restore`: the restore a runbook runs (`infra.restore` does it).

Non-interactive, so a runbook can call it; `--if-data-lost` makes it the step of
PostgresqlDown's mitigation that acts only when the database host has no cluster left
(its data directory gone or emptied): a crash or a hang leaves the data in place, and
then the step changes nothing and the restart after it does the work.
"""

from __future__ import annotations

from infra.backups import BackupError, BadBackupRequest
from infra.ops.outcome import OpsError, Outcome
from infra.restore import data_present, parse_target_time, restore
from infra.stack_lock import StackBusy
from infra.targets import target_for
from infra.topology import Topology


def run(topology: Topology, to: str | None, if_data_lost: bool) -> Outcome:
    target = target_for(topology)
    pg = topology.one("postgresql")
    outcome = Outcome(title=f"restore of PostgreSQL on {pg.host}")
    if to is not None and not to.strip():
        raise OpsError("--to is empty: give the moment just before the incident (in a "
                       "runbook: set CP_INCIDENT_START); nothing was changed")
    try:
        when = parse_target_time(to) if to else None
        if if_data_lost and not topology.has_backups:
            outcome.note(f"stack {topology.stack} keeps no backups: nothing to restore "
                         "from (restart PostgreSQL; if its data is gone, escalate)")
            return outcome
        if if_data_lost and data_present(topology, target):
            outcome.note(f"the data directory on {pg.host} holds a cluster: nothing to "
                         "restore (restart PostgreSQL instead)")
            return outcome
        done = restore(topology, target, when, progress=outcome.note)
    except (BadBackupRequest, StackBusy) as exc:
        raise OpsError(f"{exc}; nothing was changed") from None
    except BackupError as exc:
        outcome.fail(str(exc))
        return outcome
    outcome.columns = ["target", "backup", "took_s", "paused_s", "users", "audit_events",
                       "users_without_audit", "kept_aside"]
    outcome.rows = [[done.target, done.backup, round(done.duration_s, 1),
                     round(done.paused_s, 1), done.users, done.audit_events,
                     done.users_without_audit, done.aside or "-"]]
    if done.users_without_audit:
        outcome.fail(f"{done.users_without_audit} restored users have no audit event")
    return outcome
