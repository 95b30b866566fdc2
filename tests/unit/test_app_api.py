"""The app's API as both load generators call it (bench/load.py, gameday/load.py)."""

from __future__ import annotations

import random

from infra.app_api import RECENT_USERS, create_user_body, recent_user_id, user_path


def test_create_body_and_user_path():
    assert create_user_body("gd-x-0000001", "gameday.invalid") == {
        "username": "gd-x-0000001", "email": "gd-x-0000001@gameday.invalid"}
    assert user_path(42) == "/api/users/42/"


def test_reads_pick_only_recently_created_users():
    ids = list(range(5000))
    rng = random.Random(1)
    picks = {recent_user_id(rng, ids) for _ in range(2000)}
    assert min(picks) >= 5000 - RECENT_USERS and max(picks) <= 4999
    assert recent_user_id(random.Random(1), [7]) == 7
    # Same seed, same choice as the loops' own rng.choice over the window did before.
    assert recent_user_id(random.Random(3), ids) == random.Random(3).choice(ids[-1000:])
