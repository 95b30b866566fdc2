"""The backup host's schedule (playbooks/roles/pgbackrest/files/backup_schedule.py):
which backup is due, and the metrics it publishes for node_exporter."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = (Path(__file__).resolve().parents[2] / "playbooks" / "roles" / "pgbackrest" / "files"
          / "backup_schedule.py")
spec = importlib.util.spec_from_file_location("backup_schedule", SCRIPT)
schedule = importlib.util.module_from_spec(spec)
spec.loader.exec_module(schedule)

H = 3600.0
EVERY = {"full_every_s": 24 * H, "diff_every_s": H, "incr_every_s": 600}


def backup(kind: str, start: float, stop: float, delta: int = 1000) -> dict:
    return {"label": f"{kind}-{stop:.0f}", "type": kind,
            "timestamp": {"start": start, "stop": stop},
            "info": {"repository": {"delta": delta}, "size": 10 * delta}}


FULL = backup("full", 0, 10)


@pytest.mark.parametrize(("backups", "now", "wanted"), [
    ([], 0, "full"),                                        # nothing yet
    ([FULL], 20, None),                                     # a fresh full
    # 600 s after the full: an incremental is due, a differential (1 h) is not.
    ([FULL], 610, "incr"),
    ([FULL, backup("diff", 3000, 3010)], 3310, None),
    ([FULL, backup("diff", 3000, 3010)], 3610, "incr"),
    # An hour after the newest full or differential, incrementals do not count.
    ([FULL, backup("incr", 500, 510)], 3610, "diff"),
    ([FULL, backup("incr", 500, 510)], 10 + 24 * H, "full"),
])
def test_due(backups, now, wanted):
    assert schedule.due(backups, now, **EVERY) == wanted


def test_metrics_publish_the_newest_backup_of_each_type():
    info = [{"name": "civicpulse", "status": {"code": 0},
             "backup": [backup("full", 100, 160, 5000), backup("incr", 700, 705, 200),
                        backup("incr", 1300, 1302, 100)]}]
    text = schedule.metrics(info, {"incr": (1300.0, True)})
    lines = set(text.splitlines())
    assert "pgbackrest_info_success 1" in lines
    assert 'pgbackrest_backups{stanza="civicpulse",type="incr"} 2' in lines
    assert 'pgbackrest_backups{stanza="civicpulse",type="diff"} 0' in lines
    assert ('pgbackrest_backup_last_completion_timestamp_seconds{stanza="civicpulse",'
            'type="incr"} 1302') in lines
    assert ('pgbackrest_backup_last_duration_seconds{stanza="civicpulse",type="full"} 60'
            in lines)
    assert 'pgbackrest_repo_size_bytes{stanza="civicpulse"} 5300' in lines
    assert "pgbackrest_schedule_last_run_success 1" in lines
    # Every sample's metric has HELP and TYPE lines before it.
    names = {line.split("{")[0].split(" ")[0] for line in lines if not line.startswith("#")}
    assert all(f"# TYPE {n} gauge" in lines for n in names)


def test_an_unreadable_repository_is_a_metric_not_silence():
    text = schedule.metrics(None, {"full": (5.0, False)})
    assert "pgbackrest_info_success 0" in text.splitlines()
    assert "pgbackrest_schedule_last_run_success 0" in text.splitlines()
    assert "pgbackrest_backups" not in text


def test_the_textfile_is_replaced_whole(tmp_path):
    schedule.write_atomically(str(tmp_path), "pgbackrest.prom", "a 1\n")
    schedule.write_atomically(str(tmp_path), "pgbackrest.prom", "a 2\n")
    assert [p.name for p in tmp_path.iterdir()] == ["pgbackrest.prom"]
    assert (tmp_path / "pgbackrest.prom").read_text() == "a 2\n"
    assert (tmp_path / "pgbackrest.prom").stat().st_mode & 0o777 == 0o644
