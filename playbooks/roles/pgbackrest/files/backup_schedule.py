#!/usr/bin/python3
"""The backup host's schedule: take the backup that is due, and publish the repository's
state as metrics for node_exporter's textfile collector.

Why our own: pgBackRest has no scheduler, and the machine's cron is shared by every
loopback host of every stack on it (one /etc/cron.d, one spool), so a per-host
supervised loop is the only schedule that lives and dies with its host. It decides
from the repository itself (`pgbackrest info`), not from memory, so a restart, a
missed window or a manual `invoke backup` are all taken into account.

Runs as the repository's owner with Debian's python3 and its standard library only.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

#: Each metric with its help text, in the order they are written.
HELP = {
    "pgbackrest_info_success": "Whether `pgbackrest info` could read the repository.",
    "pgbackrest_stanza_status_code": "pgBackRest's stanza status code (0 ok, 2 no backup).",
    "pgbackrest_backups": "Backups in the repository, by type.",
    "pgbackrest_backup_last_completion_timestamp_seconds":
        "When the newest backup of each type finished.",
    "pgbackrest_backup_last_duration_seconds": "How long the newest backup of each type took.",
    "pgbackrest_backup_last_size_bytes":
        "Repository bytes of the newest backup of each type (what it added).",
    "pgbackrest_repo_size_bytes": "Repository bytes of every backup together.",
    "pgbackrest_schedule_last_run_timestamp_seconds":
        "When the schedule last started a backup, by type.",
    "pgbackrest_schedule_last_run_success": "Whether the schedule's last backup succeeded.",
}
TYPES = ("full", "diff", "incr")


def due(backups: list[dict], now: float, full_every_s: float, diff_every_s: float,
        incr_every_s: float) -> str | None:
    """The type of backup the schedule wants now, or None.

    A full when there is none or the newest is `full_every_s` old; else a differential
    when the newest full-or-differential is `diff_every_s` old; else an incremental
    when the newest backup of any type is `incr_every_s` old.
    """
    def newest(types: tuple[str, ...]) -> float | None:
        stops = [b["timestamp"]["stop"] for b in backups if b["type"] in types]
        return max(stops) if stops else None

    full = newest(("full",))
    if full is None or now - full >= full_every_s:
        return "full"
    if now - (newest(("full", "diff")) or full) >= diff_every_s:
        return "diff"
    if now - (newest(TYPES) or full) >= incr_every_s:
        return "incr"
    return None


def metrics(info: list[dict] | None, runs: dict[str, tuple[float, bool]]) -> str:
    """The textfile collector's exposition format for the stanza's state."""
    samples: dict[str, list[tuple[str, float]]] = {name: [] for name in HELP}
    samples["pgbackrest_info_success"].append(("", 0 if info is None else 1))
    for stanza in info or []:
        label = f'stanza="{stanza["name"]}"'
        samples["pgbackrest_stanza_status_code"].append((label, stanza["status"]["code"]))
        backups = stanza.get("backup", [])
        total = 0
        for kind in TYPES:
            of_kind = [b for b in backups if b["type"] == kind]
            samples["pgbackrest_backups"].append((f'{label},type="{kind}"', len(of_kind)))
            if not of_kind:
                continue
            last = max(of_kind, key=lambda b: b["timestamp"]["stop"])
            typed = f'{label},type="{kind}"'
            samples["pgbackrest_backup_last_completion_timestamp_seconds"].append(
                (typed, last["timestamp"]["stop"]))
            samples["pgbackrest_backup_last_duration_seconds"].append(
                (typed, last["timestamp"]["stop"] - last["timestamp"]["start"]))
            samples["pgbackrest_backup_last_size_bytes"].append(
                (typed, last["info"]["repository"]["delta"]))
        for b in backups:
            total += b["info"]["repository"]["delta"]
        samples["pgbackrest_repo_size_bytes"].append((label, total))
    for kind, (started, _ok) in sorted(runs.items()):
        samples["pgbackrest_schedule_last_run_timestamp_seconds"].append(
            (f'type="{kind}"', started))
    if runs:
        last_ok = max(runs.values())[1]
        samples["pgbackrest_schedule_last_run_success"].append(("", 1 if last_ok else 0))
    lines = []
    for name, values in samples.items():
        if not values:
            continue
        lines += [f"# HELP {name} {HELP[name]}", f"# TYPE {name} gauge"]
        lines += [f"{name}{{{labels}}} {value:.15g}" if labels else f"{name} {value:.15g}"
                  for labels, value in values]
    return "\n".join(lines) + "\n"


def write_atomically(directory: str, name: str, text: str) -> None:
    """node_exporter may read at any moment: never let it see half a file."""
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}.")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, os.path.join(directory, name))


def pgbackrest(config: str, stanza: str, *args: str,
               timeout_s: float) -> subprocess.CompletedProcess:
    return subprocess.run(["/usr/bin/pgbackrest", f"--config={config}", f"--stanza={stanza}",
                           *args], capture_output=True, text=True, timeout=timeout_s,
                          check=False)


def read_info(config: str, stanza: str) -> list[dict] | None:
    try:
        proc = pgbackrest(config, stanza, "info", "--output=json", timeout_s=60)
        return json.loads(proc.stdout) if proc.returncode == 0 else None
    except (subprocess.TimeoutExpired, ValueError):
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--stanza", required=True)
    parser.add_argument("--full-every-s", type=float, required=True)
    parser.add_argument("--diff-every-s", type=float, required=True)
    parser.add_argument("--incr-every-s", type=float, required=True)
    parser.add_argument("--textfile-dir", required=True)
    parser.add_argument("--poll-s", type=float, default=15)
    parser.add_argument("--backup-timeout-s", type=float, default=3600)
    args = parser.parse_args(argv)
    runs: dict[str, tuple[float, bool]] = {}
    while True:
        info = read_info(args.config, args.stanza)
        write_atomically(args.textfile_dir, "pgbackrest.prom", metrics(info, runs))
        stanza = (info or [{}])[0]
        # Only a stanza that is ok (it has a backup): the first full backup is the
        # deploy's, and anything else is for an operator to fix (the metrics say so).
        if stanza.get("status", {}).get("code") == 0:
            kind = due(stanza.get("backup", []), time.time(), args.full_every_s,
                       args.diff_every_s, args.incr_every_s)
            if kind is not None:
                started = time.time()
                print(f"schedule: starting a {kind} backup", flush=True)
                try:
                    proc = pgbackrest(args.config, args.stanza, "backup", f"--type={kind}",
                                      timeout_s=args.backup_timeout_s)
                    ok = proc.returncode == 0
                    detail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [""]
                except subprocess.TimeoutExpired:
                    ok, detail = False, [f"timed out after {args.backup_timeout_s:g}s"]
                runs[kind] = (started, ok)
                print(f"schedule: {kind} backup {'done' if ok else 'FAILED'} in "
                      f"{time.time() - started:.1f}s {detail[0]}", flush=True)
                if ok:
                    continue  # publish the new backup now; a failure waits a poll
        time.sleep(args.poll_s)


if __name__ == "__main__":
    sys.exit(main())
