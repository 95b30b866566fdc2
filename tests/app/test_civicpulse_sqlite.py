"""The app on SQLite (Django defaults and the tuned WAL/IMMEDIATE profile) via Gunicorn."""

from __future__ import annotations

import contextlib
import sqlite3
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from civicpulse_stack import HOST, free_port, manage, write_config

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("tuned", [False, True], ids=["django-defaults", "tuned"])
def test_sqlite_create_and_read(stack, tuned):
    workdir = stack.base / f"sqlite-{'tuned' if tuned else 'default'}"
    workdir.mkdir()
    db_path = workdir / "civicpulse.sqlite3"
    config = stack.app_config(
        database={"engine": "sqlite", "path": str(db_path), "sqlite_tuned": tuned},
        redis=None,
        gunicorn={"bind": f"{HOST}:{free_port()}", "workers": 2})
    manage(write_config(workdir / "migrate.json", config), "migrate", "--noinput", "-v", "0")
    server = stack.gunicorn(f"sqlite-{tuned}", config)
    try:
        with httpx.Client(base_url=server.base_url, timeout=10) as http:
            created = http.post("/api/users/", json={"username": "lite",
                                                     "email": "lite@example.org"})
            assert created.status_code == 201, created.text
            read = http.get(f"/api/users/{created.json()['id']}/")
            assert read.status_code == 200 and read.json() == created.json()
            assert http.post("/api/users/", json={"username": "lite", "email": "x@example.org"}
                             ).status_code == 409
            events = http.get("/api/audit/").json()["events"]
            assert [e["target_id"] for e in events] == [created.json()["id"]]
            health = http.get("/civicpulse/health/").json()
            assert health["status"] == "ok"
            assert health["checks"]["cache"] == {"status": "disabled"}
            if tuned:
                # WAL + BEGIN IMMEDIATE: concurrent writers queue instead of failing.
                def burst(t: int) -> list[int]:
                    with httpx.Client(base_url=server.base_url, timeout=30) as c:
                        return [c.post("/api/users/", json={"username": f"w{t}_{n}",
                                                            "email": "w@example.org"}
                                       ).status_code for n in range(10)]

                with ThreadPoolExecutor(max_workers=10) as pool:
                    statuses = [s for batch in pool.map(burst, range(10)) for s in batch]
                assert statuses == [201] * 100
    finally:
        server.stop()
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == ("wal" if tuned else "delete")
