"""The CivicPulse app's HTTP API as its load clients call it: paths and request bodies.

Both load generators (the benchmark's, `bench/load.py`, and the GameDays',
`gameday/load.py`) drive the same endpoints with the same requests: creating a user,
reading one created moments ago, the audit list, the health view. This module is that
shared contract, in infra/ because it is the layer both sit above (the app's health
path is already part of the stack config here, `topology.workload.health_path`).

What the two do not share, on purpose: the HTTP client and the classification of a
failure. The benchmark uses aiohttp (far cheaper per request on two cores) and sorts
failures into outcome kinds for its table; the GameDays use httpx, whose distinct
connect, pool and read timeouts decide whether a write was never sent ("failed") or
may have committed ("indeterminate"), which reconciliation depends on.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

USERS_PATH = "/api/users/"
AUDIT_PATH = "/api/audit/"
HEALTH_PATH = "/civicpulse/health/"

#: Reads pick among the most recently created users: what a client reads right after
#: creating them (and what is still in the app's cache).
RECENT_USERS = 1000


def user_path(user_id: int) -> str:
    return f"{USERS_PATH}{user_id}/"


def create_user_body(username: str, email_domain: str) -> dict[str, str]:
    """The JSON body of `POST /api/users/` for a username unique to the run."""
    return {"username": username, "email": f"{username}@{email_domain}"}


def recent_user_id(rng: random.Random, created_ids: Sequence[int]) -> int:
    """One of the users created most recently (`created_ids` in creation order)."""
    return rng.choice(created_ids[-RECENT_USERS:])
