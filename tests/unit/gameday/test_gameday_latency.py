"""The latency fault's rollback order: the proxy goes before the nft rule.

A real fault proxy (gameday/tcp_proxy.py) is started on a loopback address; the nft
rule goes to the fake target, which records when it is deleted.
"""

from __future__ import annotations

import asyncio

from gameday_fakes import FakeTarget

from gameday.faults import fault_class
from gameday.faults.base import FaultContext
from gameday.rollback_log import RollbackLog
from gameday.scenario import FaultSpec


def test_rollback_stops_the_proxy_before_deleting_the_rule(topology, monkeypatch):
    import gameday.faults.latency as latency

    monkeypatch.setattr(latency, "PROXY_DRAIN_S", 0.5)
    target = FakeTarget(topology)
    spec = FaultSpec(kind="latency", target={"service": "pgbouncer"},
                     parameters={"latency_ms": 50, "from_services": ["app"]}, duration_s=5)
    rollback_log = RollbackLog.create(topology.state_dir, "r1", topology.stack)
    ctx = FaultContext(topology=topology, target=target, rollback_log=rollback_log,
                       scenario_id="pgbouncer-latency", run_id="r1")
    fault = fault_class("latency")(spec, ctx)
    pgbouncer = topology.one("pgbouncer")
    # Listen on a free loopback address of our own, not the stack's pgbouncer address.
    monkeypatch.setattr(latency.Latency, "services",
                        property(lambda self: [type(pgbouncer)(
                            kind=pgbouncer.kind, host=pgbouncer.host, address="127.0.98.1",
                            port=pgbouncer.port)]))

    proxy_exited_before_rule_deleted = []

    def remove_network_faults() -> None:
        procs = fault._procs
        proxy_exited_before_rule_deleted.append(all(p.returncode is not None for p in procs))
        FakeTarget.remove_network_faults(target)

    target.remove_network_faults = remove_network_faults  # type: ignore[method-assign]

    async def scenario() -> None:
        await fault.inject()
        assert [c[0] for c in target.calls] == ["nft_apply"]
        assert all(p.returncode is None for p in fault._procs)
        await fault.rollback()

    asyncio.run(scenario())
    assert proxy_exited_before_rule_deleted == [True]
    assert not target.network
