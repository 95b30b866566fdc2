"""The one-statement create (PostgreSQL, no Idempotency-Key) against real PgBouncer/PostgreSQL.

`user_store.create_user` writes the user and its audit event with one
data-modifying CTE in autocommit. These tests pin what that must keep: nothing
but that one statement goes over the wire (no BEGIN/COMMIT), a failing audit
INSERT leaves no user, a duplicate writes nothing, and the metrics count as the
transaction path does. Faults are real: constraints and privileges changed in
PostgreSQL.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from civicpulse_stack import DB_NAME, DB_USER

pytestmark = pytest.mark.slow

AUDIT_TABLE = "civicpulse_audit_event"
USER_TABLE = "civicpulse_user"


def rows(stack: Any, query: str, params: list[Any]) -> list[tuple[Any, ...]]:
    with stack.app_db() as conn:
        return conn.execute(query, params).fetchall()


def superuser_sql(stack: Any, query: str) -> None:
    stack.postgres.sql(query, dbname=DB_NAME)


def post_user(client: Any, username: str, request_id: str, key: str | None = None) -> Any:
    headers = {"HTTP_X_REQUEST_ID": request_id}
    if key is not None:
        headers["HTTP_IDEMPOTENCY_KEY"] = key
    return client.post("/api/users/", {"username": username, "email": f"{username}@example.org"},
                       content_type="application/json", **headers)


def counters() -> dict[str, float]:
    from civicpulse.core import metrics

    values = {
        "users_created": metrics.USERS_CREATED._value.get(),
        "audit_written": metrics.AUDIT_WRITTEN._value.get(),
        "audit_failures": metrics.AUDIT_FAILURES._value.get(),
    }
    for kind in ("operational", "integrity", "timeout", "other"):
        values[f"db_errors_{kind}"] = metrics.DB_ERRORS.labels(kind=kind)._value.get()
    return values


def delta(before: dict[str, float]) -> dict[str, float]:
    """Counters that changed since `before` (unchanged ones left out)."""
    return {k: v - before[k] for k, v in counters().items() if v != before[k]}


@contextlib.contextmanager
def wire_trace(path: Path) -> Iterator[list[tuple[str, str, str]]]:
    """libpq's protocol trace of the next Django connection opened in this thread.

    Yields a list filled on exit with (direction, message type, rest) per protocol
    message: "F" frontend (app -> PgBouncer), "B" backend. This is what actually
    crossed the wire, including the BEGIN/COMMIT psycopg sends on its own.
    """
    import psycopg
    from django.db import connection
    from django.db.backends.signals import connection_created

    connection.close()  # the request under test must open (and trace) a fresh one

    def start(sender: Any, connection: Any, **kwargs: Any) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        connection.connection.pgconn.trace(fd)  # libpq owns and closes fd
        connection.connection.pgconn.set_trace_flags(
            psycopg.pq.Trace.SUPPRESS_TIMESTAMPS | psycopg.pq.Trace.REGRESS_MODE)

    messages: list[tuple[str, str, str]] = []
    connection_created.connect(start)
    try:
        yield messages
    finally:
        connection_created.disconnect(start)
        # The test client never closes connections, so it is still open here.
        if connection.connection is not None:
            connection.connection.pgconn.untrace()
        connection.close()
    for line in path.read_text().splitlines():
        direction, _length, kind, *rest = line.split("\t")
        messages.append((direction, kind, "\t".join(rest)))


def statements_sent(messages: list[tuple[str, str, str]]) -> list[str]:
    """SQL text of every statement the app sent (simple Query or extended Parse)."""
    return [rest for direction, kind, rest in messages
            if direction == "F" and kind in ("Query", "Parse")]


def test_create_without_key_is_one_statement_without_begin(client, stack, unique, tmp_path):
    with wire_trace(tmp_path / "libpq.trace") as messages:
        response = post_user(client, f"wire{unique}", f"wire-{unique}")
    assert response.status_code == 201, response.content

    sent = statements_sent(messages)
    assert len(sent) == 1, sent
    assert sent[0].lstrip(' "').startswith("WITH")
    assert USER_TABLE in sent[0] and AUDIT_TABLE in sent[0]
    assert not any(word in line for _, _, line in messages for word in ("BEGIN", "COMMIT"))
    # ReadyForQuery says "I" (idle), never "T" (inside a transaction block).
    ready = [rest.strip() for direction, kind, rest in messages
             if direction == "B" and kind == "ReadyForQuery"]
    assert ready == ["I"]
    assert rows(stack, f"SELECT count(*) FROM {AUDIT_TABLE} WHERE request_id = %s",
                [f"wire-{unique}"]) == [(1,)]


def test_create_with_key_keeps_its_transaction(client, unique, tmp_path):
    """The contrast that shows the trace would catch a BEGIN: the key path has one."""
    with wire_trace(tmp_path / "libpq.trace") as messages:
        response = post_user(client, f"wirek{unique}", f"wirek-{unique}", key=f"k-{unique}")
    assert response.status_code == 201, response.content
    sent = [s.strip(' "') for s in statements_sent(messages)]
    assert sent[0] == "BEGIN" and sent[-1] == "COMMIT"
    assert len(sent) == 6  # BEGIN, claim key, user, audit, save response, COMMIT


@pytest.mark.parametrize("with_key", [False, True], ids=["one-statement", "transaction"])
def test_audit_constraint_violation_leaves_no_user(client, stack, unique, with_key):
    """PostgreSQL rejects the audit row: the user row in the same statement goes too."""
    username, request_id = f"ck{unique}", f"reject-{unique}"
    key = f"ck-{unique}" if with_key else None
    constraint = f"test_reject_{unique}"
    superuser_sql(stack, f"ALTER TABLE {AUDIT_TABLE} ADD CONSTRAINT {constraint} "
                         f"CHECK (request_id <> '{request_id}') NOT VALID")
    before = counters()
    try:
        response = post_user(client, username, request_id, key)
    finally:
        superuser_sql(stack, f"ALTER TABLE {AUDIT_TABLE} DROP CONSTRAINT {constraint}")

    assert response.status_code == 503
    assert response.json() == {"error": "database unavailable"}
    assert rows(stack, f"SELECT id FROM {USER_TABLE} WHERE username = %s", [username]) == []
    assert rows(stack, f"SELECT id FROM {AUDIT_TABLE} WHERE request_id = %s", [request_id]) == []
    assert rows(stack, "SELECT key FROM civicpulse_idempotency_key WHERE key = %s", [key]) == []
    assert delta(before) == {"audit_failures": 1, "db_errors_integrity": 1}
    # Nothing half-written: the same username (and key) works on retry.
    retry = post_user(client, username, f"retry-{unique}", key)
    assert retry.status_code == 201, retry.content


@pytest.mark.parametrize(("table", "audit_failures"), [(AUDIT_TABLE, 1), (USER_TABLE, 0)])
def test_privilege_error_counts_as_audit_failure_only_for_audit_table(client, stack, unique,
                                                                      table, audit_failures):
    """The one statement fails as a whole; only an error naming the audit table is an
    audit failure (the alert AppAuditWriteFailures), as with the two-statement path."""
    username = f"pv{unique}"
    superuser_sql(stack, f"REVOKE INSERT ON {table} FROM {DB_USER}")
    before = counters()
    try:
        response = post_user(client, username, f"pv-{unique}")
    finally:
        superuser_sql(stack, f"GRANT INSERT ON {table} TO {DB_USER}")

    assert response.status_code == 503
    assert rows(stack, f"SELECT id FROM {USER_TABLE} WHERE username = %s", [username]) == []
    assert rows(stack, f"SELECT id FROM {AUDIT_TABLE} WHERE request_id = %s",
                [f"pv-{unique}"]) == []
    expected = {"db_errors_other": 1}
    if audit_failures:
        expected["audit_failures"] = audit_failures
    assert delta(before) == expected


def test_duplicate_username_409_writes_no_audit_event(client, stack, unique):
    username = f"dup{unique}"
    before = counters()
    first = post_user(client, username, f"dup1-{unique}")
    second = post_user(client, username, f"dup2-{unique}")

    assert first.status_code == 201
    assert second.status_code == 409
    assert second.json() == {"error": "username already exists", "field": "username"}
    user_id = first.json()["id"]
    assert rows(stack, f"SELECT id FROM {USER_TABLE} WHERE username = %s",
                [username]) == [(user_id,)]
    assert rows(stack, f"SELECT target_id, request_id FROM {AUDIT_TABLE} "
                       "WHERE request_id LIKE %s ORDER BY id",
                [f"dup_-{unique}"]) == [(user_id, f"dup1-{unique}")]
    # A 409 is not a database error and writes no metrics besides the first create.
    assert delta(before) == {"users_created": 1, "audit_written": 1}


@pytest.mark.parametrize("with_key", [False, True], ids=["one-statement", "transaction"])
def test_both_paths_store_and_return_the_same_document(client, stack, unique, with_key):
    username = f"doc{with_key:d}{unique}"
    response = post_user(client, username, f"doc-{unique}", f"doc-{unique}" if with_key else None)
    assert response.status_code == 201
    body = response.json()
    assert list(body) == ["id", "username", "email", "created_at"]
    assert (body["username"], body["email"]) == (username, f"{username}@example.org")
    assert client.get(f"/api/users/{body['id']}/").json() == body
    stored = rows(stack, f"SELECT e.action, e.request_id, e.created_at = u.created_at "
                         f"FROM {AUDIT_TABLE} e JOIN {USER_TABLE} u ON u.id = e.target_id "
                         "WHERE u.id = %s", [body["id"]])
    assert stored == [("user.created", f"doc-{unique}", True)]
