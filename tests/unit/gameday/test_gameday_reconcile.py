"""Lost-write accounting: a planted lost write must be caught, and every other class."""

from __future__ import annotations

from gameday.reconcile import AuditRow, UserRow, WriteRecord, reconcile


def ack(name, user_id, t=1.0):
    return WriteRecord(username=name, request_id=name, started=t, status=201,
                       outcome="acknowledged", user_id=user_id)


def event(event_id, target_id, request_id, action="user.created"):
    return AuditRow(id=event_id, action=action, target_id=target_id, request_id=request_id)


def healthy_world(n=5):
    writes = [ack(f"gd-1-{i}", 100 + i) for i in range(n)]
    users = [UserRow(100 + i, f"gd-1-{i}") for i in range(n)]
    events = [event(500 + i, 100 + i, f"gd-1-{i}") for i in range(n)]
    return writes, users, events


def test_everything_accounted_for():
    result = reconcile(*healthy_world())
    assert result.acknowledged == 5
    assert result.lost_acknowledged_writes == 0
    assert result.audit_mismatches == 0
    assert result.landed_after_error == 0


def test_planted_lost_write_is_caught():
    writes, users, events = healthy_world()
    # The database "lost" the third acknowledged write: row and event gone.
    lost = users.pop(2)
    events = [e for e in events if e.target_id != lost.id]
    result = reconcile(writes, users, events)
    assert result.lost_acknowledged_writes == 1
    (entry,) = result.lost_acknowledged
    assert entry["username"] == "gd-1-2" and entry["why"] == "no user row"
    assert entry["user_id"] == lost.id


def test_acknowledged_user_without_audit_event_is_lost_too():
    writes, users, events = healthy_world()
    events = [e for e in events if e.target_id != 101]
    result = reconcile(writes, users, events)
    assert result.lost_acknowledged_writes == 1
    assert result.lost_acknowledged[0]["why"] == "audit event missing"
    assert len(result.audit_missing) == 1


def test_failed_and_indeterminate_writes_that_landed_are_reported():
    writes, users, events = healthy_world(2)
    writes += [
        WriteRecord("gd-1-f", "gd-1-f", 2.0, status=503, outcome="failed"),
        WriteRecord("gd-1-t", "gd-1-t", 3.0, outcome="indeterminate", error="timeout"),
        WriteRecord("gd-1-n", "gd-1-n", 4.0, outcome="indeterminate", error="reset"),
        WriteRecord("gd-1-x", "gd-1-x", 5.0, status=502, outcome="failed"),
    ]
    users += [UserRow(200, "gd-1-f"), UserRow(201, "gd-1-t")]
    events += [event(600, 200, "gd-1-f"), event(601, 201, "gd-1-t")]
    result = reconcile(writes, users, events)
    assert result.lost_acknowledged_writes == 0
    assert [w["username"] for w in result.landed_despite_failure] == ["gd-1-f"]
    assert [w["username"] for w in result.landed_despite_indeterminate] == ["gd-1-t"]
    assert result.indeterminate_not_landed == 1
    assert (result.failed, result.indeterminate) == (2, 2)


def test_audit_mismatches():
    writes, users, events = healthy_world(4)
    events[0] = event(500, 100, "someone-else")            # wrong request id
    events.append(event(700, 101, "gd-1-1"))               # duplicate event
    events.append(event(701, 999, "gd-1-ghost"))           # event for no user of ours
    writes[3].user_id = 4242                               # 201 with another id
    result = reconcile(writes, users, events)
    assert len(result.audit_request_mismatch) == 1
    assert len(result.audit_duplicates) == 1
    assert len(result.audit_orphans) == 1
    assert len(result.id_mismatch) == 1
    assert result.audit_mismatches == 4
    assert result.lost_acknowledged_writes == 0


def test_rows_we_never_sent_are_listed():
    writes, users, events = healthy_world(1)
    users.append(UserRow(300, "gd-1-stranger"))
    assert reconcile(writes, users, events).unknown_rows == [
        {"username": "gd-1-stranger", "user_id": 300}]


def test_to_dict_counts_and_examples():
    writes, users, events = healthy_world(3)
    result = reconcile(writes, users[:1], events[:1]).to_dict(examples=1)
    assert result["lost_acknowledged_writes"] == 2
    assert result["lost_acknowledged"]["count"] == 2
    assert len(result["lost_acknowledged"]["examples"]) == 1
