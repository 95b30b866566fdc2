"""The chaos report's write pattern (read, then write, in one deferred ORM transaction).

It must fail on SQLite with Django's defaults the way the report says (`database is
locked` under concurrent writers), succeed on tuned SQLite and on PostgreSQL through
PgBouncer, and never leave a user without its audit event. Real Gunicorn, real
databases.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from civicpulse_stack import HOST, free_port, manage, write_config

pytestmark = pytest.mark.slow

PATH = "/api/report-pattern/users/"
WRITERS = 20
PER_WRITER = 15


def burst(base_url: str, prefix: str) -> tuple[Counter[str], list[int]]:
    """WRITERS concurrent clients, PER_WRITER creates each: (outcomes, created ids)."""
    def one_writer(w: int) -> list[tuple[str, int | None]]:
        out = []
        with httpx.Client(base_url=base_url, timeout=30) as c:
            for n in range(PER_WRITER):
                r = c.post(PATH, json={"username": f"{prefix}{w}_{n}",
                                       "email": "r@example.org"})
                kind = str(r.status_code)
                if r.status_code == 503:
                    kind += ":" + r.headers.get("X-Database-Error", "")
                out.append((kind, r.json()["id"] if r.status_code == 201 else None))
        return out

    with ThreadPoolExecutor(max_workers=WRITERS) as pool:
        results = [x for batch in pool.map(one_writer, range(WRITERS)) for x in batch]
    return Counter(k for k, _ in results), [i for _, i in results if i is not None]


def sqlite_server(stack, name: str, database: dict):
    workdir = stack.base / f"report-{name}"
    workdir.mkdir()
    db_path = workdir / "civicpulse.sqlite3"
    config = stack.app_config(
        database={"engine": "sqlite", "path": str(db_path), **database}, redis=None,
        report_pattern=True,
        gunicorn={"bind": f"{HOST}:{free_port()}", "workers": 2, "worker_class": "gthread",
                  "threads": 4})
    manage(write_config(workdir / "migrate.json", config), "migrate", "--noinput", "-v", "0")
    return stack.gunicorn(f"report-{name}", config), db_path


def sqlite_rows(db_path) -> tuple[set[int], set[int]]:
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        users = {r[0] for r in conn.execute("SELECT id FROM civicpulse_user")}
        audited = {r[0] for r in conn.execute("SELECT target_id FROM civicpulse_audit_event")}
    return users, audited


def test_report_pattern_fails_on_sqlite_defaults_as_the_report_says(stack):
    server, db_path = sqlite_server(stack, "default", {"sqlite_tuned": False})
    try:
        outcomes, created = burst(server.base_url, "d")
    finally:
        server.stop()
    locked = outcomes["503:database is locked"]
    assert locked > 0, outcomes
    assert set(outcomes) <= {"201", "503:database is locked", "503:database table is locked"}
    # The app's log says the same as its responses, once per failed request.
    log = server.log_path.read_text(errors="replace")
    assert log.count("database is locked") >= locked
    users, audited = sqlite_rows(db_path)
    # Failed transactions rolled back whole: every user has its audit event, and every
    # acknowledged create is there.
    assert users == audited == set(created)


def test_report_pattern_succeeds_on_tuned_sqlite(stack):
    server, db_path = sqlite_server(stack, "durable",
                                    {"sqlite_tuned": True, "sqlite_synchronous": "FULL"})
    try:
        outcomes, created = burst(server.base_url, "t")
    finally:
        server.stop()
    assert outcomes == Counter({"201": WRITERS * PER_WRITER})
    users, audited = sqlite_rows(db_path)
    assert users == audited == set(created)


def test_report_pattern_succeeds_on_postgresql_through_pgbouncer(stack, unique):
    config = stack.app_config(report_pattern=True, gunicorn={
        "bind": f"{HOST}:{free_port()}", "workers": 2, "worker_class": "gthread",
        "threads": 4})
    server = stack.gunicorn(f"report-pg-{unique}", config)
    try:
        outcomes, created = burst(server.base_url, f"p{unique}.")
        duplicate = httpx.post(f"{server.base_url}{PATH}",
                               json={"username": f"p{unique}.0_0", "email": "r@example.org"})
    finally:
        server.stop()
    assert outcomes == Counter({"201": WRITERS * PER_WRITER})
    assert duplicate.status_code == 409
    with stack.app_db() as conn:
        users = {r[0] for r in conn.execute(
            "SELECT id FROM civicpulse_user WHERE username LIKE %s", [f"p{unique}.%"])}
        audited = {r[0] for r in conn.execute(
            "SELECT target_id FROM civicpulse_audit_event WHERE target_id = ANY(%s)",
            [list(users)])}
    assert users == audited == set(created)


def test_report_pattern_is_not_served_unless_enabled(http):
    response = http.post(PATH, json={"username": "nope", "email": "n@example.org"})
    assert response.status_code == 404


@pytest.mark.parametrize(("tuned", "synchronous", "journal", "level"), [
    (False, "NORMAL", "delete", 2), (True, "NORMAL", "wal", 1), (True, "FULL", "wal", 2)],
    ids=["django-defaults", "tuned", "tuned-durable"])
def test_sqlite_durability_settings_reach_the_connection(stack, tuned, synchronous, journal,
                                                         level):
    """What the benchmark says of each SQLite peer's durability is the real PRAGMA of a
    Django connection: synchronous 2 (FULL) survives a power loss, 1 (NORMAL) in WAL
    mode may lose the last commits."""
    workdir = stack.base / f"pragma-{tuned}-{synchronous}"
    workdir.mkdir()
    config = write_config(workdir / "config.json", stack.app_config(
        database={"engine": "sqlite", "path": str(workdir / "db.sqlite3"),
                  "sqlite_tuned": tuned, "sqlite_synchronous": synchronous}, redis=None))
    out = manage(config, "shell", "-v", "0", "-c", (
        "from django.db import connection\n"
        "c = connection.cursor()\n"
        "print(c.execute('PRAGMA journal_mode').fetchone()[0],"
        " c.execute('PRAGMA synchronous').fetchone()[0])"))
    assert out.split() == [journal, str(level)]
