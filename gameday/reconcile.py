"""Lost-write accounting: every write the load sent, against what PostgreSQL holds.

Each `POST /api/users/` carries a username that is unique to the run and an
X-Request-ID; the app writes the user row and a `user.created` audit event (same
transaction, the event carrying that request id). After the scenario we read both
tables back and classify every write:

- lost acknowledged write: the client got 201, the row (or its audit event) is not
  there. Must be 0; anything else is data loss.
- landed despite failure / indeterminate: the client saw an error or no answer, but
  the row is there (a retry would have made a duplicate without an Idempotency-Key).
- audit mismatches: user without its event, event without its user, several events
  for one user, event with another request id, 201 with an id that is not the row's.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

USER_CREATED = "user.created"


@dataclass
class WriteRecord:
    username: str
    request_id: str
    started: float
    latency_s: float = 0.0
    status: int | None = None
    #: acknowledged (201) | failed (definite HTTP error, or never sent) |
    #: indeterminate (sent, then timeout or reset: the outcome is unknown)
    outcome: str = "indeterminate"
    user_id: int | None = None
    error: str | None = None


@dataclass(frozen=True)
class UserRow:
    id: int
    username: str


@dataclass(frozen=True)
class AuditRow:
    id: int
    action: str
    target_id: int
    request_id: str


@dataclass
class Reconciliation:
    source: str
    writes: int = 0
    acknowledged: int = 0
    failed: int = 0
    indeterminate: int = 0
    lost_acknowledged: list[dict[str, Any]] = field(default_factory=list)
    landed_despite_failure: list[dict[str, Any]] = field(default_factory=list)
    landed_despite_indeterminate: list[dict[str, Any]] = field(default_factory=list)
    indeterminate_not_landed: int = 0
    audit_missing: list[dict[str, Any]] = field(default_factory=list)
    audit_orphans: list[dict[str, Any]] = field(default_factory=list)
    audit_duplicates: list[dict[str, Any]] = field(default_factory=list)
    audit_request_mismatch: list[dict[str, Any]] = field(default_factory=list)
    id_mismatch: list[dict[str, Any]] = field(default_factory=list)
    unknown_rows: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None

    @property
    def lost_acknowledged_writes(self) -> int:
        return len(self.lost_acknowledged)

    @property
    def audit_mismatches(self) -> int:
        return (len(self.audit_missing) + len(self.audit_orphans) + len(self.audit_duplicates)
                + len(self.audit_request_mismatch) + len(self.id_mismatch))

    @property
    def landed_after_error(self) -> int:
        return len(self.landed_despite_failure) + len(self.landed_despite_indeterminate)

    def to_dict(self, examples: int = 20) -> dict[str, Any]:
        out = asdict(self)
        for key, value in out.items():
            if isinstance(value, list):
                out[key] = {"count": len(value), "examples": value[:examples]}
        out["lost_acknowledged_writes"] = self.lost_acknowledged_writes
        out["audit_mismatches"] = self.audit_mismatches
        return out


def reconcile(writes: Iterable[WriteRecord], users: Iterable[UserRow],
              events: Iterable[AuditRow], source: str = "sql") -> Reconciliation:
    """Classify every write against the user rows and audit events read back.

    `users` are the rows whose username has the run's prefix; `events` the audit
    events that belong to them (by target id) or carry one of the run's request ids.
    """
    result = Reconciliation(source=source)
    by_name = {u.username: u for u in users}
    events_by_target: dict[int, list[AuditRow]] = {}
    for event in events:
        if event.action == USER_CREATED:
            events_by_target.setdefault(event.target_id, []).append(event)
    ids_of_users = {u.id for u in by_name.values()}
    sent_names: set[str] = set()

    for w in writes:
        sent_names.add(w.username)
        result.writes += 1
        row = by_name.get(w.username)
        brief = {"username": w.username, "request_id": w.request_id, "status": w.status,
                 "error": w.error, "t": round(w.started, 3),
                 "acked": round(w.started + w.latency_s, 3)}
        if w.outcome == "acknowledged":
            result.acknowledged += 1
            if row is None:
                result.lost_acknowledged.append({**brief, "user_id": w.user_id,
                                                 "why": "no user row"})
                continue
            if w.user_id is not None and w.user_id != row.id:
                result.id_mismatch.append({**brief, "acknowledged_id": w.user_id,
                                           "row_id": row.id})
        elif w.outcome == "failed":
            result.failed += 1
            if row is not None:
                result.landed_despite_failure.append({**brief, "user_id": row.id})
        else:
            result.indeterminate += 1
            if row is not None:
                result.landed_despite_indeterminate.append({**brief, "user_id": row.id})
            else:
                result.indeterminate_not_landed += 1
        if row is None:
            continue
        found = events_by_target.get(row.id, [])
        if not found:
            entry = {**brief, "user_id": row.id, "why": "user row without audit event"}
            result.audit_missing.append(entry)
            if w.outcome == "acknowledged":
                # The audit event is part of the acknowledged write: without it the
                # write is only half there, which is data loss too.
                result.lost_acknowledged.append({**entry, "why": "audit event missing"})
        elif len(found) > 1:
            result.audit_duplicates.append({**brief, "user_id": row.id,
                                            "events": [e.id for e in found]})
        elif found[0].request_id != w.request_id:
            result.audit_request_mismatch.append({**brief, "user_id": row.id,
                                                  "event_request_id": found[0].request_id})

    for name, row in by_name.items():
        if name not in sent_names:
            result.unknown_rows.append({"username": name, "user_id": row.id})
    for target_id, found in events_by_target.items():
        if target_id not in ids_of_users:
            for event in found:
                result.audit_orphans.append({"event_id": event.id, "target_id": target_id,
                                             "request_id": event.request_id})
    return result
