"""Fixtures for the CivicPulse app tests: one real stack per session.

`stack` starts PostgreSQL 15, PgBouncer (transaction pooling, SCRAM) and Redis on
127.0.99.1; `server` is a 2-worker Gunicorn in front of them; `client` is Django's
in-process test client configured with the same JSON config, for tests that
monkeypatch app internals.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # civicpulse_stack, whatever pytest's import mode
sys.path.insert(0, str(HERE.parents[1] / "app"))  # the civicpulse package, uninstalled

import civicpulse_stack  # noqa: E402


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "slow: needs real services or takes more than a few seconds")


@pytest.fixture(scope="session")
def stack() -> Iterator[civicpulse_stack.Stack]:
    missing = civicpulse_stack.missing_binaries()
    if missing:
        pytest.skip(f"CivicPulse app tests need these binaries: {', '.join(missing)}")
    with civicpulse_stack.running_stack() as running:
        yield running


@pytest.fixture(scope="session")
def server(stack: civicpulse_stack.Stack) -> civicpulse_stack.Gunicorn:
    """Gunicorn with 2 sync workers, pointed at PgBouncer and Redis."""
    return stack.gunicorn("main", stack.app_config())


@pytest.fixture(scope="session")
def http(server: civicpulse_stack.Gunicorn) -> Iterator[Any]:
    import httpx

    with httpx.Client(base_url=server.base_url, timeout=10) as client:
        yield client


@pytest.fixture(scope="session")
def django_app(stack: civicpulse_stack.Stack) -> Iterator[None]:
    """Configure Django in this process with the stack's JSON config (once)."""
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        pytest.fail("unset PROMETHEUS_MULTIPROC_DIR for the in-process tests")
    config_path = civicpulse_stack.write_config(
        stack.base / "inprocess-config.json", stack.app_config())
    saved = {k: os.environ.get(k) for k in ("CIVICPULSE_CONFIG", "DJANGO_SETTINGS_MODULE")}
    os.environ["CIVICPULSE_CONFIG"] = str(config_path)
    os.environ["DJANGO_SETTINGS_MODULE"] = "civicpulse.settings"
    import django
    from django.db import connections

    django.setup()
    yield
    connections.close_all()
    # Later test directories (and the processes they spawn) must not inherit these.
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def client(django_app: None) -> Any:
    from django.db import connections
    from django.test import Client

    # The test client never closes connections (a real WSGI server would at request
    # end), so a connection broken by an earlier outage test must not be reused.
    connections.close_all()
    return Client()


@pytest.fixture
def unique() -> str:
    """A short unique token for usernames, so tests never collide."""
    return uuid.uuid4().hex[:12]
