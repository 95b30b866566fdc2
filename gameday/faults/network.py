"""Packet-level faults with nftables: partition (drop) and packet loss (random drop).

Scoped by the client service's system user (`meta skuid`): on loopback every
connection comes from 127.0.0.1, so a rule on addresses alone would cut off every
client of the target, the GameDay's own probes included.
"""

from __future__ import annotations

import asyncio
import pwd
import shutil
from typing import Any

from gameday.faults.base import Fault, UndoContext, undo_handler
from infra.targets import nft
from infra.targets.base import NetworkFault


@undo_handler("delete_nft_table")
def _delete_table(ctx: UndoContext, undo: dict[str, Any]) -> str:
    ctx.target.remove_network_faults()
    return f"deleted nft table {nft.FAMILY} {nft.table_for(ctx.topology.stack)}"


def user_problems(users: list[str]) -> list[str]:
    problems = []
    for user in users:
        try:
            pwd.getpwnam(user)
        except KeyError:
            problems.append(f"system user {user!r} does not exist: is the stack deployed? "
                            "(rules are scoped by the client's user)")
    return problems


class _NftFault(Fault):
    action = "drop"

    @property
    def from_users(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.ctx.target.user_of(s)
                                   for s in self.params.from_services))

    def network_faults(self) -> list[NetworkFault]:
        return [NetworkFault(
            kind=self.action, from_users=self.from_users, daddr=svc.address,
            dport=None if self.params.all_ports else svc.port,
            percent=getattr(self.params, "percent", None),
            comment=f"gameday {self.ctx.run_id} {self.ctx.scenario_id}",
        ) for svc in self.services]

    def plan(self) -> list[str]:
        return [f"nft: {nft.rule_for(f)[1]}  (table {nft.FAMILY} "
                f"{nft.table_for(self.ctx.topology.stack)}, "
                f"{self.spec.duration_s:g}s)" for f in self.network_faults()]

    def preflight(self) -> list[str]:
        problems = user_problems(list(self.from_users))
        if self.ctx.target.name == "local" and not shutil.which(nft.NFT):
            problems.append(f"{nft.NFT} not found: install the nftables package")
        return problems

    async def inject(self) -> None:
        faults = self.network_faults()
        entry = self.record_change(f"nft {self.action} rules: " + "; ".join(
            nft.rule_for(f)[1] for f in faults), {"handler": "delete_nft_table"})
        for fault in faults:
            await asyncio.to_thread(self.ctx.target.apply_network_fault, fault)
        self.applied(entry)
        self.ctx.log(f"nft {self.action} applied: {len(faults)} rule(s)")


class NetworkPartition(_NftFault):
    kind = "network_partition"
    action = "drop"


class PacketLoss(_NftFault):
    kind = "packet_loss"
    action = "loss"
