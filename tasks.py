"""CivicPulse Ops tasks (Invoke). Thin: parse flags, call a package, print.

    invoke deploy [--stack lab] [--target local|docker]
    invoke status [--stack lab] [--json]
    invoke destroy [--stack lab] [--yes]
    invoke preview [--stack lab] [--publish-monitoring]   (docker target, under mocks)
    invoke backup [--type full|diff|incr] | backups [--json]
    invoke test [--stage NAME]… | lint
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from invoke import Context, Exit, task
from rich.console import Console
from rich.table import Table

from infra.topology import load_stack
from infra.yaml_source import ConfigError

# Logs and CI are not terminals: give tables room instead of 80 columns.
console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)
REPO = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent


def _topology(stack: str):  # noqa: ANN202 - Topology, imported lazily above
    try:
        return load_stack(stack)
    except ConfigError as exc:
        raise Exit("stack config is invalid, nothing was deployed:\n  " +
                   "\n  ".join(exc.problems), code=2) from None


def _target(topology, kind: str):  # noqa: ANN001, ANN202 - Topology, Target: lazy imports
    from infra.targets import target_for
    from infra.targets.base import TargetError

    try:
        return target_for(topology, kind or None)
    except TargetError as exc:
        raise _exit_for(exc) from None


def _exit_for(exc: Exception) -> Exit:
    """The exit code of a target's error: 2 the stack config (or --target) is wrong, 3 this
    machine lacks a prerequisite (Pulumi CLI, Docker engine), 1 the action failed."""
    from infra.targets.base import PrerequisiteMissing, TargetUnfit, UnknownTarget
    from infra.targets.local_lifecycle import DeployError

    if isinstance(exc, PrerequisiteMissing):
        return Exit(str(exc), code=3)
    if isinstance(exc, TargetUnfit | UnknownTarget):
        return Exit(str(exc), code=2)
    if isinstance(exc, DeployError):
        return Exit(f"deploy failed: {exc}", code=1)
    return Exit(str(exc), code=1)


def _lines(text: str) -> None:
    """A line of a tool's output (Pulumi's, a destroy step): as it is, no markup."""
    console.print(text, markup=False, highlight=False)


def _status_table(report: dict) -> Table:
    table = Table(title=f"stack {report['stack']}")
    for col in ("host", "service", "address", "state", "health", "scrape"):
        table.add_column(col)
    for row in report["services"]:
        health = "[green]ok[/]" if row["healthy"] else f"[red]down[/] {row['detail']}"
        state = row["state"] if row["state"] == "RUNNING" else f"[yellow]{row['state']}[/]"
        scrape = {"up": "[green]up[/]", "down": "[red]down[/]"}.get(row.get("scrape", "-"),
                                                                  row.get("scrape", "-"))
        table.add_row(row["host"], row["service"], row["address"], state, health, scrape)
    return table


@task(help={"stack": "stack name (infra/stacks/<name>.yaml) or path to a stack file",
            "target": "local (this machine, default) or docker (Pulumi + Docker)",
            "publish_monitoring": "docker target: also publish Prometheus and Grafana"})
def deploy(c: Context, stack: str = "lab", target: str = "",
           publish_monitoring: bool = False) -> None:
    """Stand the stack up and wait until every service is healthy."""
    from infra.targets.base import ProgressSink, TargetError

    topology = _topology(stack)
    chosen = _target(topology, target)
    with console.status("deploying…") as spinner:
        try:
            deployed = chosen.deploy(ProgressSink(step=spinner.update, line=_lines),
                                     publish_monitoring=publish_monitoring)
        except TargetError as exc:
            raise _exit_for(exc) from None
    for line in deployed.summary:
        console.print(line)
    if deployed.status is not None:
        console.print(_status_table(deployed.status))
        console.print(f"app: {deployed.status['endpoints']['app']}")
    if not deployed.healthy:
        raise Exit("deploy finished but some services are unhealthy (see the table)", code=1)


@task(help={"stack": "stack name or path",
            "target": "docker (the only target with a Pulumi program)",
            "publish_monitoring": "also publish Prometheus and Grafana"})
def preview(c: Context, stack: str = "lab", target: str = "docker",
            publish_monitoring: bool = False) -> None:
    """What `pulumi up` would create for the docker target: the Pulumi program run under
    Pulumi's mocks (no CLI, no engine, nothing built or written), as a table."""
    if target != "docker":
        raise Exit(f"--target {target}: only the docker target has a Pulumi program to "
                   "preview (the local target is Ansible: `invoke deploy` is idempotent)",
                   code=2)
    topology = _topology(stack)
    from infra.docker.preview import preview as run_preview

    try:
        rows = run_preview(topology, publish_monitoring=publish_monitoring)
    except ConfigError as exc:
        raise Exit("the stack cannot run on the docker target:\n  " +
                   "\n  ".join(exc.problems), code=2) from None
    table = Table(title=f"stack {topology.stack}: {len(rows)} resources to create "
                        "(Pulumi program under mocks)")
    for col in ("type", "name", "what"):
        table.add_column(col)
    for row in rows:
        table.add_row(row.type, row.name, row.detail)
    console.print(table)
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.type] = counts.get(row.type, 0) + 1
    console.print("+ " + ", ".join(f"{n} {kind}" for kind, n in counts.items()))


@task(help={"stack": "stack name or path", "json": "machine-readable output on stdout",
            "target": "local (default) or docker"})
def status(c: Context, stack: str = "lab", json_: bool = False, target: str = "") -> None:
    """Every service of the stack with its state and health."""
    topology = _topology(stack)
    report = _target(topology, target).status()
    if json_:
        print(json.dumps(report, indent=2))
    else:
        console.print(_status_table(report))
        for name, url in report["endpoints"].items():
            console.print(f"{name}: {url}")
    if not all(r["healthy"] for r in report["services"]):
        raise Exit(code=1)


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


@task(help={"stack": "stack name or path",
            "type": "full, diff (changes since the last full) or incr (since the last "
                    "backup of any type); default incr",
            "target": "local (default) or docker"})
def backup(c: Context, stack: str = "lab", type: str = "incr",  # noqa: A002 - the flag's name
           target: str = "") -> None:
    """Take a backup now with pgBackRest on the backup host (the schedule keeps running)."""
    from infra.backups import BackupError, BadBackupRequest, take_backup

    topology = _topology(stack)
    chosen = _target(topology, target)
    with console.status(f"pgbackrest backup --type={type} on the backup host…"):
        try:
            taken, elapsed = take_backup(topology, chosen, type)
        except BackupError as exc:
            raise Exit(str(exc), code=2 if isinstance(exc, BadBackupRequest) else 1) from None
    console.print(f"backup {taken.label} ({taken.type}) in {elapsed:.1f}s: "
                  f"{_size(taken.repo_bytes)} added to the repository, cluster "
                  f"{_size(taken.database_bytes)}, WAL {taken.wal_start} … {taken.wal_stop}")


@task(help={"stack": "stack name or path", "json": "machine-readable output on stdout",
            "target": "local (default) or docker"})
def backups(c: Context, stack: str = "lab", json_: bool = False, target: str = "") -> None:
    """What the backup repository holds: each backup's type, age, size and WAL range."""
    import dataclasses

    from infra.backups import BackupError, BadBackupRequest, repository

    topology = _topology(stack)
    try:
        repo = repository(topology, _target(topology, target))
    except BackupError as exc:
        raise Exit(str(exc), code=2 if isinstance(exc, BadBackupRequest) else 1) from None
    if json_:
        print(json.dumps(dataclasses.asdict(repo), indent=2))
        return
    now = time.time()
    table = Table(title=f"stack {topology.stack}: stanza {repo.stanza} ({repo.status})")
    for col in ("backup", "type", "finished", "age", "took", "added", "cluster", "WAL range"):
        table.add_column(col)
    for b in repo.backups:
        table.add_row(b.label, b.type, time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(b.stopped)),
                      _age(now - b.stopped), f"{b.duration_s:.0f}s", _size(b.repo_bytes),
                      _size(b.database_bytes), f"{b.wal_start} … {b.wal_stop}")
    console.print(table)
    console.print(f"WAL archive: {repo.wal_min or '-'} … {repo.wal_max or '-'}")
    if repo.status_code != 0:
        raise Exit(f"the repository is not ok: {repo.status}", code=1)


@task(help={"stack": "stack name or path",
            "latest": "replay every archived write (the default)",
            "to": "restore the state at this time (ISO 8601; UTC when no offset)",
            "yes": "do not ask for confirmation",
            "target": "local (default) or docker"})
def restore(c: Context, stack: str = "lab", latest: bool = False, to: str = "",
            yes: bool = False, target: str = "") -> None:
    """Restore the database from the backup repository (PgBouncer pauses clients)."""
    from infra.backups import BackupError, BadBackupRequest
    from infra.restore import parse_target_time
    from infra.restore import restore as run_restore
    from infra.stack_lock import StackBusy

    if latest and to:
        raise Exit("--latest and --to exclude each other: give one", code=2)
    topology = _topology(stack)
    chosen = _target(topology, target)
    try:
        when = parse_target_time(to) if to else None
    except BadBackupRequest as exc:
        raise Exit(str(exc), code=2) from None
    what = f"the state at {when.isoformat()}" if when else "the latest archived state"
    if not yes:
        answer = input(f"Replace stack {topology.stack}'s database with {what}? Writes "
                       "after it are kept aside, not in the database. [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            raise Exit("nothing was changed", code=1)
    try:
        done = run_restore(topology, chosen, when, progress=_lines)
    except StackBusy as exc:
        raise Exit(f"{exc}; nothing was changed", code=2) from None
    except BackupError as exc:
        raise Exit(str(exc), code=2 if isinstance(exc, BadBackupRequest) else 1) from None
    console.print(f"restored {done.target} from backup {done.backup} in "
                  f"{done.duration_s:.1f}s (clients paused {done.paused_s:.1f}s): "
                  f"{done.users} users, {done.audit_events} audit events, "
                  f"{done.users_without_audit} users without one")
    if done.aside:
        console.print(f"the data directory it replaced is kept at {done.aside}")


@task(help={"stack": "stack name or path", "yes": "do not ask for confirmation",
            "target": "local (default) or docker"})
def destroy(c: Context, stack: str = "lab", yes: bool = False, target: str = "") -> None:
    """Stop every service of the stack and delete its state (data and secrets)."""
    from infra.targets.base import ProgressSink, TargetError

    topology = _topology(stack)
    chosen = _target(topology, target)
    if not yes:
        if not sys.stdin.isatty():
            raise Exit("destroy deletes all data of the stack: pass --yes to confirm", code=2)
        answer = input(f"Delete stack {topology.stack} and all its data in "
                       f"{topology.state_dir}? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            raise Exit("aborted", code=1)
    try:
        still = chosen.destroy(ProgressSink(step=_lines, line=_lines))
    except TargetError as exc:
        raise _exit_for(exc) from None
    if still:
        raise Exit("still listening after destroy: " + ", ".join(still), code=1)


@task(help={"stack": "stack name or path",
            "scenario": "scenario id (repeatable); default: the whole catalog",
            "list": "list the scenarios and exit", "dry_run": "validate and plan, change nothing",
            "cleanup": "undo whatever a killed run left behind, then check health"},
      iterable=["scenario"])
def gameday(c: Context, stack: str = "lab", scenario: list[str] | None = None,
            list_: bool = False, dry_run: bool = False, cleanup: bool = False) -> None:
    """Run GameDays: fault under load, time-to-detect, runbook, time-to-recover, lost writes."""
    import gameday as gd
    from infra.stack_lock import StackBusy

    topology = _topology(stack)
    try:
        if list_:
            table = Table(title="GameDay catalog")
            for col in ("id", "title", "fault", "target", "expected alerts"):
                table.add_column(col)
            for s in gd.list_scenarios(topology):
                table.add_row(s.id, s.title, s.fault, s.target, ", ".join(s.alerts))
            console.print(table)
            return
        if cleanup:
            report = gd.cleanup(topology)
            console.print(report.summary())
            if not report.healthy:
                raise Exit("cleanup done but the stack is not healthy", code=1)
            return
        run = gd.run_gameday(topology, scenario or None, dry_run=dry_run)
    except ConfigError as exc:
        raise Exit("scenario files are invalid, nothing ran:\n  " +
                   "\n  ".join(exc.problems), code=2) from None
    except StackBusy as exc:
        raise Exit(f"another GameDay or cleanup holds stack {topology.stack}: {exc}",
                   code=2) from None
    except RuntimeError as exc:
        raise Exit(f"GameDay stopped: {exc}; run `invoke gameday --cleanup`", code=1) from None
    for note in run.notes if dry_run else []:
        console.print(note)
    if run.report_dir:
        console.print(f"report: {run.report_dir}")
    if run.exit_code:
        raise Exit("a hypothesis was falsified (see the report)", code=run.exit_code)


@task(help={"stack": "stack name or path", "junit": "also write JUnit XML here"})
def verify(c: Context, stack: str = "lab", junit: str = "") -> None:
    """testinfra checks of every deployed host, through the Ansible inventory."""
    from infra.verify import verify as run_verify

    try:
        result = run_verify(_topology(stack), Path(junit) if junit else None)
    except FileNotFoundError as exc:
        raise Exit(str(exc), code=2) from None
    if result.returncode != 0:
        raise Exit(f"verify failed (pytest exit {result.returncode})", code=1)


@task(help={"stack": "stack name or path",
            "quick": "N = 1, 20, 200 at 3 s (the report's pattern at 1 and 20), no read mix",
            "ns": "comma-separated user counts, e.g. 1,5,20",
            "duration": "seconds per point", "no_bounds": "skip pgbench and wrk",
            "patterns": "comma-separated: write, report-pattern, read-mix (default: all)"})
def bench(c: Context, stack: str = "lab", quick: bool = False, ns: str = "",
          duration: float = 0.0, no_bounds: bool = False, patterns: str = "") -> None:
    """The report's concurrency table redone: its own write pattern and the API's, on
    the stack vs SQLite (Django's defaults, tuned, tuned and durable)."""
    from bench import BenchError, default_out_dir, run_bench

    try:
        result = run_bench(_topology(stack), quick=quick, ns=ns or None,
                           duration_s=duration or None,
                           out_dir=default_out_dir(REPO / "reports"), console=console,
                           variants=patterns.split(",") if patterns else None,
                           bounds=not no_bounds)
    except BenchError as exc:
        raise Exit(f"bench: {exc}", code=2) from None
    if not result.stack_integrity_ok:
        raise Exit("bench: users and audit rows of the stack disagree", code=1)


@task(help={"json": "machine-readable report on stdout"})
def runbooks(c: Context, json_: bool = False) -> None:
    """Check runbooks/ against alerts, scenarios and ops commands; coverage matrix."""
    from gameday.runbook_check import check_runbooks, print_report

    report = check_runbooks(REPO)
    if json_:
        print(json.dumps(report.to_dict(), indent=2, default=str))
    else:
        print_report(report, console)
    if not report.ok:
        raise Exit(f"{len(report.problems)} runbook problem(s)", code=1)


@task
def lint(c: Context) -> None:
    """ruff on the Python code, the import layers, yamllint on the YAML, the runbook checker."""
    c.run(f"{BIN}/ruff check .", pty=False)
    # The contracts of pyproject.toml: an import that points up a layer fails CI.
    c.run(f"{BIN}/lint-imports --no-cache --no-logo", pty=False)
    c.run(f"{BIN}/yamllint -s -c {REPO}/.yamllint playbooks infra/stacks monitoring "
          "gameday/scenarios", pty=False)
    runbooks(c)


#: The stages of `invoke test`, in order: (name, pytest selection or None for a task).
TEST_STAGES = (
    ("unit", "-m 'not slow and not deploy'"),
    ("services", "-m 'slow and not deploy and not docker'"),
    ("integration", "-m deploy"),
    # The docker target on a private engine: images, containers, checks, destroy.
    ("docker", "-m docker"),
)
#: GameDay smoke of the main job (CI): one scenario with its alert and runbook, on the
#: lab stack as the quick start deploys it. The other fault families run in the
#: integration stage (database-disk-full, app-host-crash, redis-partition) and on the
#: docker target (postgresql-crash, redis-down, app-host-crash), so one is enough here.
SMOKE_SCENARIOS = ("postgresql-crash",)


def _stage(name: str, timings: dict[str, float]):  # noqa: ANN202 - context manager
    from contextlib import contextmanager

    @contextmanager
    def timed():  # noqa: ANN202
        console.rule(f"stage: {name}")
        started = time.monotonic()
        try:
            yield
        finally:
            timings[name] = time.monotonic() - started
            console.print(f"stage {name}: {timings[name]:.0f}s")
    return timed()


#: Every stage name `--stage` accepts, in the order `invoke test` runs them.
ALL_STAGES = ("lint", *(name for name, _ in TEST_STAGES), "smoke")


@task(help={"fast": "lint and unit tests only (no services, no deploy)",
            "smoke": "end with the main job on the lab stack: deploy, verify, GameDay smoke, "
                     "destroy (default; --no-smoke skips it)",
            "stage": f"run only this stage (repeatable): {', '.join(ALL_STAGES)}"},
      iterable=["stage"])
def test(c: Context, fast: bool = False, smoke: bool = True,
         stage: list[str] | None = None) -> None:
    """The whole suite: lint; unit + promtool; tests against real services started by
    the tests; integration on a throwaway stack (deploy over local + SSH, verify,
    GameDays, runbooks, bench); the docker target on a private engine; then the main
    job on the lab stack. JUnit XML in reports/junit/."""
    unknown = [s for s in stage or [] if s not in ALL_STAGES]
    if unknown:
        raise Exit(f"--stage {', '.join(unknown)}: no such stage (stages: "
                   f"{', '.join(ALL_STAGES)})", code=2)
    if stage and fast:
        raise Exit("--stage and --fast both choose stages: give one of them", code=2)
    chosen = set(stage) if stage else {"lint", "unit"} if fast else \
        set(ALL_STAGES) - (set() if smoke else {"smoke"})
    timings: dict[str, float] = {}
    junit_dir = REPO / "reports" / "junit"
    junit_dir.mkdir(parents=True, exist_ok=True)
    if "lint" in chosen:
        with _stage("lint", timings):
            lint(c)
    for name, selection in TEST_STAGES:
        if name not in chosen:
            continue
        with _stage(name, timings):
            result = c.run(f"{BIN}/pytest {selection} --junitxml={junit_dir}/{name}.xml",
                           pty=False, warn=True)
            # pytest exits 5 when a selection is empty: not a failure of the suite.
            if result.exited not in (0, 5):
                raise Exit(f"stage {name} failed", code=1)
    if "smoke" in chosen:
        with _stage("deploy lab", timings):
            deploy(c)
        with _stage("verify lab", timings):
            verify(c, junit=str(junit_dir / "verify-lab.xml"))
        with _stage("gameday smoke", timings):
            gameday(c, scenario=list(SMOKE_SCENARIOS))
        with _stage("destroy lab", timings):
            destroy(c, yes=True)
    table = Table(title="test stages")
    table.add_column("stage")
    table.add_column("seconds", justify="right")
    for name, seconds in timings.items():
        table.add_row(name, f"{seconds:.0f}")
    table.add_row("total", f"{sum(timings.values()):.0f}")
    console.print(table)
