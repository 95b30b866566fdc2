"""Latency between a client service and its server: a fault proxy in the data path.

How the proxy gets into the path without reconfiguring the client: the proxy listens
on the server's address, on a free port; an nftables `dnat` rule in a nat/output
chain, scoped to the client's system user, sends the client's *new* connections to
the server's address:port on to the proxy, which connects upstream as root (not
matched by the rule). Verified on this kernel with nft 1.0.6. Consequences:

- Only new connections are rerouted. The app keeps its PgBouncer connections for
  conn_max_age (300 s in the stacks), so the fault reaches a worker when it next opens
  one; under load that is within seconds of a restart or an error.
- Rollback stops the proxy first (SIGTERM: the delay drops to zero, it stops
  accepting, open connections get `--drain-s` to finish, then they are closed so the
  app reconnects), and only then deletes the rule. The other order was measured to
  strand queries in flight on the app's long-lived connections: Gunicorn's worker
  timeout (30 s) was what finally freed them, and recovery took 27–39 s instead of
  ~11 s.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from gameday import tcp_proxy
from gameday.faults.base import marker_for
from gameday.faults.network import _NftFault
from infra.targets import nft
from infra.targets.base import NetworkFault

PROXY_SCRIPT = Path(tcp_proxy.__file__).resolve()
#: How long a stopping proxy lets open connections finish (tcp_proxy.py --drain-s).
PROXY_DRAIN_S = 5.0


class ProxyStartError(Exception):
    pass


async def start_proxy(listen: str, upstream: str, latency_ms: float, jitter_ms: float,
                      direction: str, lifetime_s: float, marker: str,
                      nft_table: str = "") -> tuple[asyncio.subprocess.Process,
                                                                  tuple[str, int]]:
    argv = [sys.executable, str(PROXY_SCRIPT), "--listen", listen, "--upstream", upstream,
            "--latency-ms", str(latency_ms), "--jitter-ms", str(jitter_ms),
            "--direction", direction, "--max-lifetime-s", str(lifetime_s),
            "--marker", marker, "--drain-s", str(PROXY_DRAIN_S)]
    if nft_table:
        argv += ["--on-expiry-delete-nft-table", nft_table]
    # Own session: a Ctrl-C in the terminal must reach the engine only, which then
    # rolls back in order (rule first, proxy last).
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        stdin=asyncio.subprocess.DEVNULL, start_new_session=True,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    assert proc.stdout is not None
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), timeout=10)
    except TimeoutError:
        proc.kill()
        raise ProxyStartError("fault proxy did not start within 10s") from None
    parts = line.decode().split()
    if len(parts) != 3 or parts[0] != "LISTENING":
        proc.kill()
        raise ProxyStartError(f"fault proxy failed to start: {line.decode().strip()!r}")
    return proc, (parts[1], int(parts[2]))


class Latency(_NftFault):
    kind = "latency"
    action = "redirect"

    def plan(self) -> list[str]:
        p = self.params
        return [f"fault proxy on {s.address}:<free port> → {s.endpoint} adding "
                f"{p.latency_ms}±{p.jitter_ms} ms ({p.direction}); nft dnat for "
                f"{', '.join(self.from_users)} → {s.endpoint} to the proxy, "
                f"{self.spec.duration_s:g}s" for s in self.services]

    async def inject(self) -> None:
        p = self.params
        self._procs: list[asyncio.subprocess.Process] = []
        for svc in self.services:
            marker = marker_for(self.ctx, f"proxy-{svc.host}")
            proxy_entry = self.record_change(
                f"fault proxy for {svc.name}@{svc.host}",
                {"handler": "kill_marked_processes", "marker": marker, "pids": []})
            proc, (addr, port) = await start_proxy(
                f"{svc.address}:0", svc.endpoint, p.latency_ms, p.jitter_ms, p.direction,
                lifetime_s=self.spec.duration_s + 120, marker=marker,
                nft_table=nft.table_for(self.ctx.topology.stack))
            self._procs.append(proc)
            self.ctx.rollback_log.update_undo(proxy_entry, pids=[proc.pid])
            self.applied(proxy_entry)
            fault = NetworkFault(kind="redirect", from_users=self.from_users,
                                 daddr=svc.address, dport=svc.port, redirect_to=(addr, port),
                                 comment=f"gameday {self.ctx.run_id} latency")
            entry = self.record_change(f"nft redirect: {nft.rule_for(fault)[1]}",
                                       {"handler": "delete_nft_table"})
            await asyncio.to_thread(self.ctx.target.apply_network_fault, fault)
            self.applied(entry)
            self.ctx.log(f"latency proxy {addr}:{port} → {svc.endpoint} (+{p.latency_ms} ms)")

    async def rollback(self) -> list[str]:
        # Proxy first, rule second: see the module docstring. The rollback log's handlers
        # (run by super().rollback()) then find the proxy gone and delete the table.
        for proc in getattr(self, "_procs", []):
            if proc.returncode is None:
                proc.terminate()
        for proc in getattr(self, "_procs", []):
            # Reap the child so it does not linger as a zombie of the engine.
            try:
                await asyncio.wait_for(proc.wait(), timeout=PROXY_DRAIN_S + 2)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        return await super().rollback()
