"""`python -m infra.ops <command> --stack <stack> …`: the commands runbooks call.

Exit status: 0 the command did what it says and everything it checked is fine;
1 it ran but found a problem (a service unhealthy, an alert still firing, a check
below its threshold); 2 it could not run as asked (unknown host or service, stack not
deployed, a service it needs is down): the message says what is valid instead.

`COMMANDS` is the registry: the runbook check (`gameday/runbook_lint.py`) parses every step
against `build_parser()`, so a runbook cannot call a command or option that does
not exist here.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from infra.ops import (
    cache,
    database_restore,
    disk,
    drain,
    pgbouncer,
    postgresql,
    prometheus,
    services,
)
from infra.ops.console import render
from infra.ops.outcome import OpsError, Outcome, redact, stack_secret_values
from infra.ops.stacks import resolve_stack
from infra.runbook_env import runbook_env
from infra.topology import Topology
from infra.yaml_source import ConfigError

PROG = "python -m infra.ops"


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[Topology, argparse.Namespace], Outcome]


def _service_host(p: argparse.ArgumentParser, service_required: bool = True) -> None:
    p.add_argument("--service", required=service_required, default=None,
                   help="service name from the stack config (postgresql, app, redis, …)")
    p.add_argument("--host", default=None,
                   help="host name from the stack config (app1, db, …); empty = all")


def _status_args(p: argparse.ArgumentParser) -> None:
    _service_host(p, service_required=False)
    p.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                   help="probe again until healthy or SECONDS have passed")


def _logs_args(p: argparse.ArgumentParser) -> None:
    _service_host(p)
    p.add_argument("--lines", type=int, default=40, help="how many lines (default 40)")
    p.add_argument("--grep", default=None, metavar="REGEX",
                   help="only lines matching REGEX (searched in the last 5000 lines)")


def _restart_args(p: argparse.ArgumentParser) -> None:
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--service", default=None,
                       help="service name from the stack config (postgresql, app, redis, …)")
    which.add_argument("--scrape-target", default=None, metavar="ADDRESS:PORT",
                       help="the service instance Prometheus scrapes there (an alert's "
                            "instance label, e.g. TargetDown's) instead of --service/--host")
    p.add_argument("--host", default=None,
                   help="host name from the stack config (app1, db, …); empty = all")
    p.add_argument("--unhealthy", action="store_true",
                   help="only instances that do not answer at all (all hosts of the service); "
                        "alive but not ready (e.g. app 503 on a slow database) is left alone")
    p.add_argument("--wait", type=float, default=30.0, metavar="SECONDS",
                   help="how long to wait for health afterwards (default 30)")


def _pools_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--show", default="pools", choices=pgbouncer.VIEWS,
                   help="which SHOW view of the admin console (default pools)")


def _kill_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--older-than", type=int, default=None, metavar="SECONDS",
                   help="only transactions open longer than this (default: PgBouncer's "
                        "query_timeout from the stack config, which no app transaction "
                        "should reach)")
    p.add_argument("--state", default="idle-in-transaction", choices=tuple(postgresql.STATES),
                   help="which sessions (default idle-in-transaction)")
    p.add_argument("--dry-run", action="store_true", help="list them, terminate nothing")


def _kill_direct_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--idle-for", type=int, default=2, metavar="SECONDS",
                   help="only sessions idle at least this long, so that a statement in "
                        "flight is not cut (default 2)")
    p.add_argument("--dry-run", action="store_true", help="list them, terminate nothing")


def _drain_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", required=True, help="the app host (app1, app2, …)")
    p.add_argument("--force", action="store_true",
                   help="drain the last healthy host / undrain an unhealthy one anyway")


def _cache_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("keys", nargs="*", metavar="KEY", help="keys to delete, e.g. user:42")
    p.add_argument("--pattern", default=None, help="also keys matching this glob (SCAN MATCH)")
    p.add_argument("--max", type=int, default=1000, help="refuse if the pattern matches more")
    p.add_argument("--foreign", action="store_true",
                   help="also every key that is not the app's own (user:<id>)")
    p.add_argument("--dry-run", action="store_true", help="show what would go")


def _cache_keys_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sample", type=int, default=5000,
                   help="size at most this many keys (SCAN, MEMORY USAGE; default 5000)")


def _cache_clients_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kill-foreign-idle-for", type=int, default=None, metavar="SECONDS",
                   help="CLIENT KILL clients that are not the app's, idle this long")
    p.add_argument("--dry-run", action="store_true", help="count them, kill nothing")


def _disk_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--clean", action="store_true",
                   help="delete rotated logs and leftover GameDay balloon files")
    p.add_argument("--truncate-access-log", action="store_true",
                   help="with --clean: also empty nginx's access log (history is lost)")
    p.add_argument("--min-free-pct", type=float, default=None, metavar="PCT",
                   help="exit 1 if a stack filesystem has less than PCT%% free")
    p.add_argument("--top", type=int, default=10, help="how many large directories to list")


def _alerts_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--name", default=None, help="only this alert")
    p.add_argument("--state", default="firing", choices=("firing", "pending", "any"))
    check = p.add_mutually_exclusive_group()
    check.add_argument("--fail-if-firing", action="store_true",
                       help="exit 1 if a matching alert (other than Watchdog) fires")
    check.add_argument("--expect-firing", action="store_true",
                       help="exit 1 unless a matching alert fires (e.g. the Watchdog)")


def _promql_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("expr", help="PromQL expression (quote it)")
    p.add_argument("--expect-empty", action="store_true",
                   help="exit 1 if any series is returned (the condition still holds)")


def _env_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default=None, help="also export CP_ALERT_HOST (the alert's host)")
    p.add_argument("--service", default=None,
                   help="also export CP_ALERT_SERVICE (the alert's service)")


def _restore_args(p: argparse.ArgumentParser) -> None:
    which = p.add_mutually_exclusive_group()
    which.add_argument("--latest", action="store_true",
                       help="replay every archived write (the default)")
    which.add_argument("--to", default=None, metavar="TIME",
                       help="the state at TIME (ISO 8601; UTC when no offset)")
    p.add_argument("--if-data-lost", action="store_true",
                   help="only when the database host has no cluster left; else do nothing")


def _none(_p: argparse.ArgumentParser) -> None:
    return None


def _env(topology: Topology, args: argparse.Namespace) -> Outcome:
    """The variables runbook steps use, as shell exports (no secrets)."""
    # The GameDay runner's own definition, so a human gets exactly what a GameDay gets.
    env = runbook_env(topology, base={})
    if args.host:
        env["CP_ALERT_HOST"] = args.host
    if args.service:
        env["CP_ALERT_SERVICE"] = args.service
    outcome = Outcome()
    outcome.notes.extend(f"export {k}={shlex.quote(v)}" for k, v in sorted(env.items()))
    return outcome


COMMANDS: dict[str, Command] = {c.name: c for c in (
    Command("status", "state and health of services (all by default)",
            _status_args, lambda t, a: services.status(t, a.service, a.host, a.wait)),
    Command("logs", "the end of a service's log on its host(s)", _logs_args,
            lambda t, a: services.logs(t, a.service, a.host, a.lines, a.grep)),
    Command("processes", "a service's processes and their state (stopped = frozen)",
            lambda p: _service_host(p),
            lambda t, a: services.process_list(t, a.service, a.host)),
    Command("restart", "restart one service on one host (or every unhealthy instance)",
            _restart_args,
            lambda t, a: services.restart(t, a.service, a.host, a.unhealthy, a.wait,
                                          a.scrape_target)),
    Command("pools", "PgBouncer admin console: SHOW POOLS (or --show stats|lists|…)",
            _pools_args, lambda t, a: pgbouncer.show(t, a.show)),
    Command("pg-activity", "PostgreSQL client sessions, oldest transaction first", _none,
            lambda t, a: postgresql.activity(t)),
    Command("kill-idle-tx", "terminate sessions idle in a transaction for too long",
            _kill_args,
            lambda t, a: postgresql.kill_transactions(t, a.older_than, a.state, a.dry_run)),
    Command("kill-direct-clients", "terminate idle sessions that bypass PgBouncer",
            _kill_direct_args,
            lambda t, a: postgresql.kill_direct_clients(t, a.idle_for, a.dry_run)),
    Command("drain", "take an app host out of nginx's upstream (graceful reload)",
            _drain_args, lambda t, a: drain.drain(t, a.host, a.force)),
    Command("undrain", "put a drained app host back into nginx's upstream", _drain_args,
            lambda t, a: drain.undrain(t, a.host, a.force)),
    Command("drained", "which app hosts are drained (recorded and in nginx.conf)", _none,
            lambda t, a: drain.report(t)),
    Command("cache-del", "delete poisoned Redis keys (the app re-caches from PostgreSQL)",
            _cache_args,
            lambda t, a: cache.delete_keys(t, a.keys, a.pattern, a.max, a.dry_run,
                                           a.foreign)),
    Command("cache-clients", "Redis clients by name and address; kill foreign idle ones",
            _cache_clients_args,
            lambda t, a: cache.clients(t, a.kill_foreign_idle_for, a.dry_run)),
    Command("cache-keys", "what fills Redis: memory, keys by pattern, biggest first",
            _cache_keys_args, lambda t, a: cache.usage(t, a.sample)),
    Command("disk", "disk space of the stack; --clean frees rotated logs and balloons",
            _disk_args,
            lambda t, a: disk.disk(t, a.clean, a.truncate_access_log, a.min_free_pct, a.top)),
    Command("alerts", "alerts Prometheus has now", _alerts_args,
            lambda t, a: prometheus.alerts(t, a.name, a.state, a.fail_if_firing,
                                             a.expect_firing)),
    Command("promql", "evaluate a PromQL expression on the stack's Prometheus",
            _promql_args, lambda t, a: prometheus.query(t, a.expr, a.expect_empty)),
    Command("restore", "restore PostgreSQL from the backup repository (clients paused)",
            _restore_args, lambda t, a: database_restore.run(t, a.to, a.if_data_lost)),
    Command("env", "print the CP_* variables runbook steps use, as shell exports",
            _env_args, _env),
)}


def command_names() -> list[str]:
    return sorted(COMMANDS)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Operational commands for a CivicPulse stack (see runbooks/).",
        epilog="exit status: 0 ok, 1 a check failed, 2 could not run as asked")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS.values():
        p = sub.add_parser(command.name, help=command.help, description=command.help)
        p.add_argument("--stack", default=os.environ.get("CP_STACK"),
                       help="stack name (infra/stacks/<name>.yaml) or path; default $CP_STACK")
        p.add_argument("--json", action="store_true", help="machine-readable output")
        command.configure(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.stack:
        print(f"{PROG} {args.command}: no stack: pass --stack NAME (or set CP_STACK)",
              file=sys.stderr)
        return 2
    try:
        topology = resolve_stack(args.stack)
    except ConfigError as exc:
        print(f"{PROG} {args.command}: cannot load stack {args.stack!r}:\n  "
              + "\n  ".join(exc.problems), file=sys.stderr)
        return 2
    secrets = stack_secret_values(topology)
    try:
        outcome = COMMANDS[args.command].run(topology, args)
    except OpsError as exc:
        print(redact(f"{PROG} {args.command}: {exc}", secrets), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    render(outcome, secrets, as_json=args.json)
    return 0 if outcome.ok else 1
