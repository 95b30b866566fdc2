"""The pure parts of a restore: the --to time, its range, the pgBackRest command,
and the recovery point a data-losing GameDay reports."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gameday.verdict import lost_window_check
from infra.backups import BadBackupRequest
from infra.restore import check_target_time, parse_target_time, restore_argv
from infra.topology import load_stack


def test_a_time_without_offset_is_utc_and_one_with_an_offset_keeps_it():
    assert parse_target_time("2026-12-07T21:40:00") == datetime(2026, 12, 7, 21, 40, tzinfo=UTC)
    cet = parse_target_time("2026-12-07T22:40:00+01:00")
    assert cet.utcoffset() == timedelta(hours=1)
    assert cet.timestamp() == datetime(2026, 12, 7, 21, 40, tzinfo=UTC).timestamp()


@pytest.mark.parametrize("text", ["yesterday", "", "2026-13-01T00:00:00", "12:00 tomorrow"])
def test_a_bad_time_is_refused_naming_the_flag(text):
    with pytest.raises(BadBackupRequest, match="--to"):
        parse_target_time(text)


def test_the_target_must_lie_between_the_oldest_backup_and_now():
    oldest, now = 1_000_000.0, 2_000_000.0
    check_target_time(datetime.fromtimestamp(1_500_000, UTC), oldest, now)
    with pytest.raises(BadBackupRequest, match="before the oldest backup's end"):
        check_target_time(datetime.fromtimestamp(999_999, UTC), oldest, now)
    with pytest.raises(BadBackupRequest, match="in the future"):
        check_target_time(datetime.fromtimestamp(2_000_001, UTC), oldest, now)
    with pytest.raises(BadBackupRequest, match="no backup yet"):
        check_target_time(datetime.fromtimestamp(1_500_000, UTC), None, now)


def test_restore_command_latest_replays_everything_and_a_time_promotes_there():
    lab = load_stack("lab")
    latest = restore_argv(lab, "db", None)
    assert latest[-1] == "restore" and not any(a.startswith("--type") for a in latest)
    assert any(a.startswith("--config=") and a.endswith("/hosts/db/pgbackrest/pgbackrest.conf")
               for a in latest)
    when = datetime(2026, 12, 7, 21, 40, 5, 250000, tzinfo=UTC)
    timed = restore_argv(lab, "db", when)
    assert "--type=time" in timed and "--target-action=promote" in timed
    assert "--target=2026-12-07 21:40:05.250000+00:00" in timed


def test_lost_writes_inside_the_archive_window_pass_and_older_ones_fail():
    injected = 100.0
    inside = [{"t": 95.0, "acked": 95.5}, {"t": 99.0, "acked": 99.9}]
    ok = lost_window_check(inside, injected, 7)
    assert ok.passed and "2 lost, acknowledged from -4.5s to -0.1s of the fault" in ok.measured
    older = [*inside, {"t": 80.0, "acked": 80.2}]
    assert not lost_window_check(older, injected, 7).passed
    assert lost_window_check([], injected, 7).passed
