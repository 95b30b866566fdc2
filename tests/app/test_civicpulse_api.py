"""API contract over HTTP through a real Gunicorn -> PgBouncer -> PostgreSQL (+ Redis)."""

from __future__ import annotations

import json
import re
from datetime import datetime

import httpx
import pytest

pytestmark = pytest.mark.slow

USER_KEYS = {"id", "username", "email", "created_at"}
EVENT_KEYS = {"id", "action", "target_id", "request_id", "created_at"}
LONG_EMAIL = "a" * 64 + "@" + "b" * 63 + "." + "c" * 63 + "." + "d" * 61  # 254 chars


def create(http: httpx.Client, username: str, email: str | None = None,
           **headers: str) -> httpx.Response:
    body = {"username": username, "email": email or f"{username}@example.org"}
    return http.post("/api/users/", json=body, headers=headers)


def count_users(stack, username: str) -> int:
    with stack.app_db() as conn:
        return conn.execute("SELECT count(*) FROM civicpulse_user WHERE username = %s",
                            [username]).fetchone()[0]


def test_health_ok(http):
    response = http.get("/civicpulse/health/")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert set(body["checks"]) == {"database", "cache"}
    for check in body["checks"].values():
        assert check["status"] == "ok"
        assert isinstance(check["latency_ms"], (int, float)) and check["latency_ms"] >= 0
    assert response.headers["content-type"] == "application/json"


def test_create_user_contract(http, stack, unique):
    response = create(http, f"u{unique}", f"u{unique}@example.org")
    assert response.status_code == 201
    body = response.json()
    assert set(body) == USER_KEYS
    assert isinstance(body["id"], int) and body["id"] > 0
    assert body["username"] == f"u{unique}" and body["email"] == f"u{unique}@example.org"
    assert datetime.fromisoformat(body["created_at"]).utcoffset() is not None
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"])

    with stack.app_db() as conn:
        row = conn.execute(
            "SELECT action, target_id, request_id FROM civicpulse_audit_event "
            "WHERE target_id = %s", [body["id"]]).fetchall()
    assert row == [("user.created", body["id"], response.headers["x-request-id"])]


def test_request_id_is_echoed_and_stored(http, stack, unique):
    response = create(http, f"r{unique}", **{"X-Request-ID": f"trace.{unique}-1_A"})
    assert response.status_code == 201
    assert response.headers["x-request-id"] == f"trace.{unique}-1_A"
    with stack.app_db() as conn:
        stored = conn.execute("SELECT request_id FROM civicpulse_audit_event "
                              "WHERE target_id = %s", [response.json()["id"]]).fetchone()
    assert stored == (f"trace.{unique}-1_A",)


@pytest.mark.parametrize("bad_id", ["x" * 65, "has space", "semi;colon", "ü"])
def test_invalid_request_id_is_replaced(http, bad_id):
    response = http.get("/civicpulse/health/", headers={"X-Request-ID": bad_id.encode()})
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"])


def test_get_user_matches_create(http, unique):
    created = create(http, f"g{unique}").json()
    first = http.get(f"/api/users/{created['id']}/")
    second = http.get(f"/api/users/{created['id']}/")  # served from Redis this time
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json() == created


def test_user_cached_in_redis(http, stack, unique):
    import redis

    created = create(http, f"c{unique}").json()
    http.get(f"/api/users/{created['id']}/")
    client = redis.Redis.from_url(stack.redis.url, socket_timeout=1)
    try:
        cached = client.get(f"user:{created['id']}")
        ttl = client.ttl(f"user:{created['id']}")
    finally:
        client.close()
    assert cached is not None and json.loads(cached) == created
    assert 0 < ttl <= 300


@pytest.mark.parametrize("path", ["/api/users/999999999/", f"/api/users/{2**63}/"])
def test_unknown_user_404(http, path):
    response = http.get(path)
    assert response.status_code == 404
    assert response.json() == {"error": "not found"}


def test_duplicate_username_409(http, stack, unique):
    assert create(http, f"d{unique}").status_code == 201
    response = create(http, f"d{unique}", f"other{unique}@example.org")
    assert response.status_code == 409
    body = response.json()
    assert body["field"] == "username" and isinstance(body["error"], str)
    assert count_users(stack, f"d{unique}") == 1


BAD_BODIES = [
    (b"{not json", None),
    (b"[1, 2]", None),
    (b"\xff\xfe", None),
    (b'{"email": "x@example.org"}', "username"),
    (b'{"username": 5, "email": "x@example.org"}', "username"),
    (b'{"username": "", "email": "x@example.org"}', "username"),
    (json.dumps({"username": "a" * 151, "email": "x@example.org"}).encode(), "username"),
    (b'{"username": "has space", "email": "x@example.org"}', "username"),
    (b'{"username": "USERNAME"}', "email"),
    (b'{"username": "USERNAME", "email": ["x@example.org"]}', "email"),
    (b'{"username": "USERNAME", "email": "not-an-email"}', "email"),
    (json.dumps({"username": "USERNAME", "email": "a" + LONG_EMAIL}).encode(), "email"),
]


@pytest.mark.parametrize(("raw", "field"), BAD_BODIES)
def test_invalid_create_400(http, stack, unique, raw, field):
    username = f"bad{unique}"
    response = http.post("/api/users/", content=raw.replace(b"USERNAME", username.encode()),
                         headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    body = response.json()
    assert body["field"] == field
    assert isinstance(body["error"], str) and body["error"]
    assert count_users(stack, username) == 0


def test_oversized_body_400(http):
    response = http.post("/api/users/", content=b'{"username": "' + b"a" * 70_000 + b'"}')
    assert response.status_code == 400
    assert response.json()["field"] is None


def test_max_length_fields_accepted(http, unique):
    username = (f"m{unique}" + "x" * 150)[:150]
    response = create(http, username, LONG_EMAIL)
    assert response.status_code == 201, response.text
    assert response.json()["email"] == LONG_EMAIL


def test_wrong_method_405(http):
    response = http.get("/api/users/")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"


def test_unmatched_path_json_404(http):
    response = http.get("/no/such/path")
    assert response.status_code == 404
    assert response.json() == {"error": "not found"}


def test_disallowed_host_400(http):
    response = http.get("/civicpulse/health/", headers={"Host": "evil.example"})
    assert response.status_code == 400


def latest_audit_id(stack) -> int:
    with stack.app_db() as conn:
        return conn.execute("SELECT coalesce(max(id), 0) FROM civicpulse_audit_event"
                            ).fetchone()[0]


def test_audit_pagination(http, stack, unique):
    start = latest_audit_id(stack)
    ids = [create(http, f"p{unique}{i}").json()["id"] for i in range(3)]

    page1 = http.get("/api/audit/", params={"after": start, "limit": 2}).json()
    assert set(page1) == {"events", "next_after"}
    assert [e["target_id"] for e in page1["events"]] == ids[:2]
    for event in page1["events"]:
        assert set(event) == EVENT_KEYS
        assert event["action"] == "user.created"
        assert datetime.fromisoformat(event["created_at"]).utcoffset() is not None
    assert page1["next_after"] == page1["events"][-1]["id"]
    assert page1["events"][0]["id"] < page1["events"][1]["id"]

    page2 = http.get("/api/audit/", params={"after": page1["next_after"], "limit": 2}).json()
    assert [e["target_id"] for e in page2["events"]] == ids[2:]

    empty = http.get("/api/audit/", params={"after": page2["next_after"]}).json()
    assert empty == {"events": [], "next_after": page2["next_after"]}


def test_audit_default_limit_is_100(http, stack, unique):
    start = latest_audit_id(stack)
    for i in range(101):
        assert create(http, f"l{unique}{i}").status_code == 201
    body = http.get("/api/audit/", params={"after": start}).json()
    assert len(body["events"]) == 100
    assert len(http.get("/api/audit/", params={"after": start, "limit": 1000}
                        ).json()["events"]) == 101


@pytest.mark.parametrize(("params", "field"), [
    ({"limit": 1001}, "limit"),
    ({"limit": 0}, "limit"),
    ({"limit": "ten"}, "limit"),
    ({"limit": "1.5"}, "limit"),
    ({"after": "x"}, "after"),
    ({"after": -1}, "after"),
])
def test_audit_bad_params_400(http, params, field):
    response = http.get("/api/audit/", params=params)
    assert response.status_code == 400
    assert response.json()["field"] == field


def test_request_logs_are_json_lines(http, server, unique):
    request_id = f"log-{unique}"
    http.get("/civicpulse/health/", headers={"X-Request-ID": request_id})
    entries = [json.loads(line) for line in server.log_path.read_text().splitlines()
               if request_id in line]
    assert entries, server.log_tail()
    entry = entries[-1]
    assert entry["request_id"] == request_id
    assert entry["method"] == "GET" and entry["path"] == "/civicpulse/health/"
    assert entry["status"] == 200 and entry["view"] == "health"
    assert isinstance(entry["duration_ms"], float)
