"""All-or-nothing writes, idempotency and concurrency against real PostgreSQL/PgBouncer."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

pytestmark = pytest.mark.slow


def rows(stack, query: str, params: list) -> list[tuple]:
    with stack.app_db() as conn:
        return conn.execute(query, params).fetchall()


def test_audit_failure_rolls_back_user(client, stack, unique, monkeypatch):
    """A real database error on the audit insert (after the user insert) undoes both.

    With an Idempotency-Key the create is a transaction of separate statements; the
    one-statement path (no key) is covered in test_civicpulse_one_statement.py.
    """
    from civicpulse.core import audit, metrics

    # Same parameters, but names a column that does not exist: PostgreSQL itself
    # rejects the second INSERT inside the open transaction.
    monkeypatch.setattr(audit, "_INSERT", audit._INSERT.replace(
        "created_at)", "created_at, no_such_column)").replace("%s)", "%s, 1)"))
    failures_before = metrics.AUDIT_FAILURES._value.get()
    username = f"atomic{unique}"

    response = client.post("/api/users/", {"username": username, "email": "a@example.org"},
                           content_type="application/json", HTTP_X_REQUEST_ID=f"rid-{unique}",
                           HTTP_IDEMPOTENCY_KEY=f"atomic-{unique}")

    assert response.status_code == 503
    assert response.json() == {"error": "database unavailable"}
    assert rows(stack, "SELECT id FROM civicpulse_user WHERE username = %s", [username]) == []
    assert rows(stack, "SELECT id FROM civicpulse_audit_event WHERE request_id = %s",
                [f"rid-{unique}"]) == []
    assert rows(stack, "SELECT key FROM civicpulse_idempotency_key WHERE key = %s",
                [f"atomic-{unique}"]) == []
    assert metrics.AUDIT_FAILURES._value.get() == failures_before + 1


def test_injected_failure_between_inserts_rolls_back(client, stack, unique, monkeypatch):
    """The write is visible inside the transaction, yet nothing survives the failure."""
    from civicpulse.core import audit
    from django.db import DatabaseError

    seen_inside: list[int] = []

    def fail_after_user_insert(cursor, user_id, request_id, db_timestamp):
        cursor.execute("SELECT count(*) FROM civicpulse_user WHERE id = %s", [user_id])
        seen_inside.append(cursor.fetchone()[0])
        raise DatabaseError("injected failure between user and audit inserts")

    monkeypatch.setattr(audit, "record_user_created", fail_after_user_insert)
    username = f"inject{unique}"
    response = client.post("/api/users/", {"username": username, "email": "a@example.org"},
                           content_type="application/json", HTTP_IDEMPOTENCY_KEY=f"k-{unique}")
    assert response.status_code == 503
    assert seen_inside == [1]
    assert rows(stack, "SELECT id FROM civicpulse_user WHERE username = %s", [username]) == []
    assert rows(stack, "SELECT key FROM civicpulse_idempotency_key WHERE key = %s",
                [f"k-{unique}"]) == []
    # Nothing half-written blocks a clean retry with the same key.
    monkeypatch.undo()
    retry = client.post("/api/users/", {"username": username, "email": "a@example.org"},
                        content_type="application/json", HTTP_IDEMPOTENCY_KEY=f"k-{unique}")
    assert retry.status_code == 201


def test_idempotent_retry_returns_original(http, stack, unique):
    headers = {"Idempotency-Key": f"key-{unique}"}
    body = {"username": f"i{unique}", "email": f"i{unique}@example.org"}
    first = http.post("/api/users/", json=body, headers=headers)
    second = http.post("/api/users/", json=body, headers=headers)
    assert first.status_code == second.status_code == 201
    assert second.content == first.content
    assert second.headers.get("idempotent-replayed") == "true"
    assert len(rows(stack, "SELECT id FROM civicpulse_user WHERE username = %s",
                    [body["username"]])) == 1
    assert len(rows(stack, "SELECT id FROM civicpulse_audit_event WHERE target_id = %s",
                    [first.json()["id"]])) == 1


def test_idempotency_key_reuse_with_other_body_422(http, unique):
    headers = {"Idempotency-Key": f"key-{unique}"}
    assert http.post("/api/users/", json={"username": f"j{unique}", "email": "j@example.org"},
                     headers=headers).status_code == 201
    response = http.post("/api/users/", json={"username": f"k{unique}", "email": "k@example.org"},
                         headers=headers)
    assert response.status_code == 422
    assert response.json()["field"] == "Idempotency-Key"


def test_invalid_idempotency_key_400(http, unique):
    response = http.post("/api/users/", json={"username": f"q{unique}", "email": "q@example.org"},
                         headers={"Idempotency-Key": "x" * 256})
    assert response.status_code == 400
    assert response.json()["field"] == "Idempotency-Key"


def run_concurrently(count: int, func) -> list:
    """Run func(i) in `count` threads released together by a barrier."""
    barrier = threading.Barrier(count)

    def task(i: int):
        barrier.wait(timeout=30)
        return func(i)

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(task, range(count)))


def test_concurrent_same_idempotency_key_creates_one_user(server, stack, unique):
    body = {"username": f"cc{unique}", "email": "cc@example.org"}

    def post(_: int) -> tuple[int, bytes]:
        with httpx.Client(base_url=server.base_url, timeout=30) as http:
            r = http.post("/api/users/", json=body, headers={"Idempotency-Key": f"c-{unique}"})
            return r.status_code, r.content

    results = run_concurrently(20, post)
    assert {status for status, _ in results} == {201}
    assert len({content for _, content in results}) == 1
    assert len(rows(stack, "SELECT id FROM civicpulse_user WHERE username = %s",
                    [body["username"]])) == 1
    user_id = json.loads(results[0][1])["id"]
    assert len(rows(stack, "SELECT id FROM civicpulse_audit_event WHERE target_id = %s",
                    [user_id])) == 1


def test_concurrent_same_username_one_wins(server, stack, unique):
    def post(i: int) -> int:
        with httpx.Client(base_url=server.base_url, timeout=30) as http:
            return http.post("/api/users/", json={"username": f"race{unique}",
                                                  "email": f"r{i}@example.org"}).status_code

    statuses = run_concurrently(20, post)
    assert sorted(statuses) == [201] + [409] * 19
    users = rows(stack, "SELECT id FROM civicpulse_user WHERE username = %s", [f"race{unique}"])
    assert len(users) == 1
    # The 19 losers wrote no audit event either.
    assert rows(stack, "SELECT count(*) FROM civicpulse_audit_event WHERE target_id = %s",
                [users[0][0]]) == [(1,)]


def test_50_threads_x_20_creations(server, stack, unique):
    """1000 creations from 50 concurrent clients: no errors, every user audited once."""
    prefix = f"load{unique}"
    errors: list[str] = []

    def client_loop(t: int) -> None:
        with httpx.Client(base_url=server.base_url, timeout=30) as http:
            for n in range(20):
                r = http.post("/api/users/", json={"username": f"{prefix}_{t}_{n}",
                                                   "email": f"{t}.{n}@example.org"})
                if r.status_code != 201:
                    errors.append(f"{r.status_code} {r.text[:200]}")

    run_concurrently(50, client_loop)

    assert errors == []
    users = rows(stack, "SELECT count(*) FROM civicpulse_user WHERE username LIKE %s",
                 [f"{prefix}\\_%"])[0][0]
    audited = rows(stack,
                   "SELECT count(*), count(DISTINCT e.target_id), count(DISTINCT e.request_id) "
                   "FROM civicpulse_audit_event e JOIN civicpulse_user u ON u.id = e.target_id "
                   "WHERE u.username LIKE %s", [f"{prefix}\\_%"])[0]
    assert users == 1000
    assert audited == (1000, 1000, 1000)
