"""nftables rules for network faults, all in one table of ours.

Facts this relies on (measured, DESIGN §2): on loopback every client connects from
127.0.0.1, so rules are scoped by the client's system user (`meta skuid`), one user
per service. `drop` partitions (clients time out; removing the rule restores at
once); `numgen random mod 100 < N drop` loses N% (shows as retransmit latency); a
`dnat` in a nat/output chain reroutes a client's new connections through a fault
proxy without touching the client's config. Everything lives in one table per stack,
`inet civicpulse_gameday_<stack>` (two stacks' GameDays never touch each other's
rules), and rollback deletes that table whole: no rule of ours can be left behind by
a partial rollback.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence

from infra.targets.base import NetworkFault

TABLE_PREFIX = "civicpulse_gameday_"
FAMILY = "inet"
NFT = "/usr/sbin/nft"


class NftError(Exception):
    pass


def table_for(stack: str) -> str:
    """The stack's own table (stack names allow '-', nft identifiers do not)."""
    return TABLE_PREFIX + stack.replace("-", "_")


def _quote(text: str) -> str:
    return '"' + text.replace('"', "'") + '"'


def _users(users: Sequence[str]) -> str:
    if len(users) == 1:
        return _quote(users[0])
    return "{ " + ", ".join(_quote(u) for u in users) + " }"


def rule_for(fault: NetworkFault) -> tuple[str, str]:
    """(chain, rule) for one fault."""
    if not fault.from_users:
        raise ValueError("a network fault must be scoped to client users (meta skuid)")
    match = f"meta skuid {_users(fault.from_users)} ip daddr {fault.daddr}"
    if fault.dport is not None:
        match += f" tcp dport {fault.dport}"
    comment = f" comment {_quote(fault.comment[:120])}" if fault.comment else ""
    if fault.kind == "drop":
        return "filter_output", f"{match} drop{comment}"
    if fault.kind == "loss":
        if not fault.percent or not 1 <= fault.percent <= 100:
            raise ValueError("loss needs percent in 1..100")
        return "filter_output", f"{match} numgen random mod 100 < {fault.percent} drop{comment}"
    if fault.kind == "redirect":
        if fault.redirect_to is None or fault.dport is None:
            raise ValueError("redirect needs dport and redirect_to")
        addr, port = fault.redirect_to
        return "nat_output", f"{match} dnat ip to {addr}:{port}{comment}"
    raise ValueError(f"unknown network fault kind {fault.kind!r}")


def render(faults: Sequence[NetworkFault], table: str) -> str:
    """One atomic nft transaction that replaces our table with these faults."""
    chains: dict[str, list[str]] = {"filter_output": [], "nat_output": []}
    for fault in faults:
        chain, rule = rule_for(fault)
        chains[chain].append(rule)
    lines = [
        # Create-then-delete makes the delete succeed whether or not the table exists,
        # and the whole file is one transaction: the old rules and the new ones are
        # never both active, and a bad rule leaves the old state untouched.
        f"table {FAMILY} {table} {{}}",
        f"delete table {FAMILY} {table}",
        f"table {FAMILY} {table} {{",
        "  chain filter_output {",
        "    type filter hook output priority 0; policy accept;",
        *(f"    {r}" for r in chains["filter_output"]),
        "  }",
        "  chain nat_output {",
        "    type nat hook output priority -100; policy accept;",
        *(f"    {r}" for r in chains["nat_output"]),
        "  }",
        "}",
    ]
    return "\n".join(lines) + "\n"


def _nft(args: Sequence[str], stdin: str | None = None, timeout: float = 10) -> str:
    proc = subprocess.run([NFT, *args], input=stdin, capture_output=True, text=True,
                          timeout=timeout, check=False)
    if proc.returncode != 0:
        raise NftError(f"nft {' '.join(args)} failed ({proc.returncode}): "
                       f"{proc.stderr.strip()}")
    return proc.stdout


def apply(faults: Sequence[NetworkFault], table: str) -> None:
    _nft(["-f", "-"], stdin=render(faults, table))


def delete_table(table: str) -> bool:
    """Delete the table; returns whether it existed."""
    if not table_exists(table):
        return False
    _nft(["delete", "table", FAMILY, table])
    return True


def table_exists(table: str) -> bool:
    try:
        out = _nft(["-j", "list", "tables"])
    except (NftError, FileNotFoundError):
        return False
    try:
        data = json.loads(out)
    except ValueError:
        return f"{FAMILY} {table}" in out
    return any(item.get("table", {}).get("name") == table
               and item.get("table", {}).get("family") == FAMILY
               for item in data.get("nftables", []))


def list_table(table: str) -> str:
    try:
        return _nft(["list", "table", FAMILY, table])
    except NftError:
        return ""
