"""CivicPulse Ops tasks (Invoke). Thin: parse flags, call a package, print.

    invoke deploy [--stack lab] [--target local|docker]
    invoke status [--stack lab] [--json]
    invoke destroy [--stack lab] [--yes]
    invoke test | lint
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from invoke import Context, Exit, task
from rich.console import Console
from rich.table import Table

from infra.topology import load_stack
from infra.yaml_source import ConfigError

console = Console(stderr=True)
REPO = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent


def _topology(stack: str):  # noqa: ANN202 - Topology, imported lazily above
    try:
        return load_stack(stack)
    except ConfigError as exc:
        raise Exit("stack config is invalid, nothing was deployed:\n  " +
                   "\n  ".join(exc.problems), code=2) from None


def _status_table(report: dict) -> Table:
    table = Table(title=f"stack {report['stack']}")
    for col in ("host", "service", "address", "state", "health"):
        table.add_column(col)
    for row in report["services"]:
        health = "[green]ok[/]" if row["healthy"] else f"[red]down[/] {row['detail']}"
        state = row["state"] if row["state"] == "RUNNING" else f"[yellow]{row['state']}[/]"
        table.add_row(row["host"], row["service"], row["address"], state, health)
    return table


@task(help={"stack": "stack name (infra/stacks/<name>.yaml) or path to a stack file",
            "target": "local (this machine, default) or docker (Pulumi + Docker)"})
def deploy(c: Context, stack: str = "lab", target: str = "") -> None:
    """Stand the stack up and wait until every service is healthy."""
    topology = _topology(stack)
    target = target or topology.target
    if target == "docker":
        from infra.docker_target import deploy_docker

        deploy_docker(topology, console)
        return
    if target != "local":
        raise Exit(f"--target must be local or docker, not {target!r}", code=2)
    from infra.local_target import DeployError, status
    from infra.local_target import deploy as deploy_local

    with console.status("deploying…") as spinner:
        try:
            result = deploy_local(topology, progress=lambda m: spinner.update(m))
        except DeployError as exc:
            raise Exit(f"deploy failed: {exc}", code=1) from None
    changed = result.playbook.changed
    console.print(f"Ansible: changed={changed} in {result.timings['ansible']:.1f}s; "
                  f"ready after {result.timings['readiness']:.1f}s; "
                  f"total {result.timings['total']:.1f}s")
    report = status(topology)
    console.print(_status_table(report))
    console.print(f"app: {report['endpoints']['app']}")
    if not result.healthy:
        raise Exit("deploy finished but some services are unhealthy (see the table)", code=1)


@task(help={"stack": "stack name or path", "json": "machine-readable output on stdout"})
def status(c: Context, stack: str = "lab", json_: bool = False) -> None:
    """Every service of the stack with its state and health."""
    from infra.local_target import status as stack_status

    report = stack_status(_topology(stack))
    if json_:
        print(json.dumps(report, indent=2))
    else:
        console.print(_status_table(report))
        for name, url in report["endpoints"].items():
            console.print(f"{name}: {url}")
    if not all(r["healthy"] for r in report["services"]):
        raise Exit(code=1)


@task(help={"stack": "stack name or path", "yes": "do not ask for confirmation"})
def destroy(c: Context, stack: str = "lab", yes: bool = False) -> None:
    """Stop every service of the stack and delete its state (data and secrets)."""
    topology = _topology(stack)
    if not yes:
        if not sys.stdin.isatty():
            raise Exit("destroy deletes all data of the stack: pass --yes to confirm", code=2)
        answer = input(f"Delete stack {topology.stack} and all its data in "
                       f"{topology.state_dir}? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            raise Exit("aborted", code=1)
    from infra.local_target import destroy as destroy_local

    still = destroy_local(topology, progress=console.print)
    if still:
        raise Exit("still listening after destroy: " + ", ".join(still), code=1)
    console.print(f"stack {topology.stack} destroyed; nothing of it is listening")


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


@task
def lint(c: Context) -> None:
    """ruff on the Python code, yamllint on the YAML."""
    c.run(f"{BIN}/ruff check .", pty=False)
    c.run(f"{BIN}/yamllint -s -c {REPO}/.yamllint playbooks infra/stacks", pty=False)


@task(help={"fast": "unit tests only (no deploy)", "junit": "write JUnit XML to this path"})
def test(c: Context, fast: bool = False, junit: str = "reports/junit.xml") -> None:
    """The whole suite: lint, unit, promtool, app, deploy, verify, GameDay smoke."""
    started = time.monotonic()
    lint(c)
    marker = "-m 'not slow and not deploy'" if fast else ""
    os.makedirs(os.path.dirname(junit) or ".", exist_ok=True)
    c.run(f"{BIN}/pytest {marker} --junitxml={junit}", pty=False)
    console.print(f"test suite finished in {time.monotonic() - started:.0f}s")
