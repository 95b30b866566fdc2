"""Drain an app host out of nginx's upstream (and put it back), the configured way.

The drained set lives in `<state_dir>/ops/drained.json` (see `infra.drained`)
and reaches nginx through the nginx role's `nginx_drained_hosts`, which marks those
upstream servers `down`. We apply it by re-running the real playbook for the edge
host only (`--limit <edge> --skip-tags install,run`, the drained set as an extra variable):
the role renders nginx.conf, validates it with `nginx -t` and reloads nginx with
SIGHUP, which drains gracefully (in-flight requests finish on the old workers).
That takes seconds longer than editing nginx.conf by hand, but it never leaves a
config that a later deploy would silently revert or that nobody validated.
"""

from __future__ import annotations

import fcntl
import json
import re
from collections.abc import Callable
from typing import Any

from infra.ansible_run import PlaybookResult, run_playbook
from infra.drained import drained_hosts, write_drained
from infra.health import probe
from infra.inventory import write_inventory
from infra.ops.outcome import OpsError, Outcome
from infra.ops.select import instances
from infra.paths import drained_path, host_dir
from infra.topology import Service, Topology

PlaybookRunner = Callable[..., PlaybookResult]


def _app_instance(topology: Topology, host: str) -> Service:
    apps = {s.host: s for s in topology.instances("app")}
    if host not in apps:
        instances(topology, None, host)  # unknown host: raises naming the valid ones
        raise OpsError(f"host {host} runs no app server; app hosts of stack {topology.stack}: "
                       f"{', '.join(sorted(apps))}")
    return apps[host]


def nginx_upstream(topology: Topology) -> dict[str, bool]:
    """App host → drained (`down`) according to the nginx.conf deployed on the edge host."""
    edge = topology.one("nginx")
    conf = host_dir(topology, edge.host) / "nginx" / "nginx.conf"
    state: dict[str, bool] = {}
    try:
        text = conf.read_text(encoding="utf-8")
    except OSError as exc:
        raise OpsError(f"cannot read {conf} ({exc.strerror}): is the stack deployed?") from None
    for match in re.finditer(r"^\s*server\s+\S+\s+([^;]*);\s*#\s*(\S+)", text, re.M):
        state[match[2]] = " down" in f" {match[1]}"
    return state


def apply(topology: Topology, drained: list[str],
          runner: PlaybookRunner = run_playbook) -> PlaybookResult:
    """Re-render and reload nginx on the edge host with `drained` marked down."""
    ops_dir = drained_path(topology).parent
    inventory = write_inventory(topology, ops_dir / "inventory.yml")
    edges = ",".join(s.host for s in topology.instances("nginx"))
    return runner(inventory, ops_dir / "ansible", extra_args=[
        # --skip-tags, not --tags configure: site.yml includes the service roles with
        # untagged include_role tasks, which --tags would skip along with the role.
        "--limit", edges, "--skip-tags", "install,run",
        "--extra-vars", json.dumps({"nginx_drained_hosts": drained})])


def _change(topology: Topology, host: str, drain: bool, force: bool,
            runner: PlaybookRunner) -> Outcome:
    target = _app_instance(topology, host)
    lock_path = drained_path(topology).with_suffix(".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as lock:
        # Two drains at once would each write their own set and one would be lost.
        fcntl.flock(lock, fcntl.LOCK_EX)
        current = drained_hosts(topology)
        wanted = sorted(set(current) | {host}) if drain else sorted(set(current) - {host})
        if drain:
            serving = [s for s in topology.instances("app")
                       if s.host not in wanted and probe(topology, s).ok]
            if not serving and not force:
                raise OpsError(f"draining {host} would leave no healthy app host in nginx's "
                               "upstream (a full outage); fix another app host first, or pass "
                               "--force if an outage is what you want")
        elif not probe(topology, target).ok and not force:
            raise OpsError(f"app on {host} fails its health probe: undraining it sends users "
                           "to a broken host. Restart it first (python -m infra.ops restart "
                           f"--stack {topology.stack} --service app --host {host}), or pass "
                           "--force")
        result = apply(topology, wanted, runner)
        if not result.ok:
            detail = "; ".join(result.failures[:3]) or f"see {result.log}"
            raise OpsError(f"Ansible failed to apply the drained set {wanted} to nginx "
                           f"(exit {result.returncode}): {detail}. Nothing was recorded.")
        write_drained(topology, wanted)
    return report(topology, note=f"{'drained' if drain else 'undrained'} {host}: nginx "
                                 f"reloaded (Ansible changed={result.changed})")


def drain(topology: Topology, host: str, force: bool = False,
          runner: PlaybookRunner = run_playbook) -> Outcome:
    return _change(topology, host, True, force, runner)


def undrain(topology: Topology, host: str, force: bool = False,
            runner: PlaybookRunner = run_playbook) -> Outcome:
    return _change(topology, host, False, force, runner)


def report(topology: Topology, note: str = "") -> Outcome:
    """Each app host: recorded as drained?, `down` in the deployed nginx.conf?, healthy?"""
    recorded = set(drained_hosts(topology))
    upstream = nginx_upstream(topology)
    outcome = Outcome(title=f"app hosts behind nginx (stack {topology.stack})",
                      columns=["host", "recorded", "nginx upstream", "app health"])
    if note:
        outcome.note(note)
    for svc in topology.instances("app"):
        in_conf: Any = upstream.get(svc.host)
        nginx_state = "absent" if in_conf is None else ("down" if in_conf else "serving")
        outcome.rows.append([svc.host, "drained" if svc.host in recorded else "in service",
                             nginx_state, "ok" if probe(topology, svc).ok else "DOWN"])
        if (svc.host in recorded) != bool(in_conf):
            outcome.fail(f"{svc.host}: drained.json and the deployed nginx.conf disagree "
                         "(was the stack redeployed since?); run drain/undrain again")
    return outcome

