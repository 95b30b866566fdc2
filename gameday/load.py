"""Bounded async load through nginx: N virtual users, connection reuse, every write
classified.

Each virtual user loops: pick a request from the mix, send it, record a sample, think.
Every `POST /api/users/` carries a username unique to the run (also its X-Request-ID),
and is classified for reconciliation:

- acknowledged: 201 (the app says it committed).
- failed: a definite answer that is not 2xx, or the request was never sent
  (connection refused, connect timeout, no free connection in the pool).
- indeterminate: sent, then no answer (read timeout, reset, protocol error): it may or
  may not have committed; reconciliation finds out.

Bounds: the number of users, the request cap, each request's timeout, and `stop()`,
which waits at most one timeout for the requests in flight.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Iterable
from dataclasses import dataclass

import httpx

from gameday.clock import Clock
from gameday.reconcile import WriteRecord
from gameday.scenario import RequestMix
from gameday.timeline import RequestSample
from infra.app_api import (
    AUDIT_PATH,
    HEALTH_PATH,
    USERS_PATH,
    create_user_body,
    recent_user_id,
    user_path,
)

OPS = ("create_user", "get_user", "list_audit", "health")


def classify_exception(exc: BaseException) -> tuple[str, str]:
    """(outcome, error kind) for a request that got no HTTP answer."""
    if isinstance(exc, httpx.ConnectTimeout):
        return "failed", "connect_timeout"
    if isinstance(exc, httpx.ConnectError):
        return "failed", "connect_refused"
    if isinstance(exc, httpx.PoolTimeout):
        return "failed", "client_pool_timeout"
    if isinstance(exc, (httpx.ReadTimeout, httpx.WriteTimeout)):
        return "indeterminate", "timeout"
    if isinstance(exc, httpx.RemoteProtocolError):
        return "indeterminate", "reset"
    if isinstance(exc, (httpx.ReadError, httpx.WriteError, httpx.NetworkError)):
        return "indeterminate", "reset"
    if isinstance(exc, asyncio.CancelledError):
        return "indeterminate", "cancelled"
    return "indeterminate", type(exc).__name__


def classify_status(status: int) -> str:
    return "ok" if 200 <= status < 300 else "failed"


@dataclass
class LoadSnapshot:
    users: int
    sent: int
    ok: int
    failed: int
    indeterminate: int
    inflight: int
    acknowledged_writes: int


class LoadGenerator:
    def __init__(self, base_url: str, prefix: str, users: int, mix: RequestMix,
                 clock: Clock, think_time_ms: float = 20, timeout_s: float = 5,
                 max_requests: int = 500_000, max_users: int | None = None,
                 seed: int = 1, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.prefix = prefix
        self.users = users
        self.mix = mix
        self.clock = clock
        self.think_s = think_time_ms / 1000.0
        self.timeout_s = timeout_s
        self.max_requests = max_requests
        self.max_users = max(max_users or users, users)
        self.seed = seed
        self.transport = transport  # tests pass an httpx.MockTransport
        self.samples: list[RequestSample] = []
        self.writes: list[WriteRecord] = []
        self.inflight: dict[int, float] = {}
        self._acknowledged_ids: list[int] = []
        self._seq = itertools.count(1)
        self._req = itertools.count(1)
        self._sent = 0
        self._counts = {"ok": 0, "failed": 0, "indeterminate": 0}
        self._tasks: list[tuple[asyncio.Task[None], asyncio.Event]] = []
        self._stop = asyncio.Event()
        self._client: httpx.AsyncClient | None = None
        weights = [getattr(mix, op) for op in OPS]
        self._ops = [op for op, w in zip(OPS, weights, strict=True) if w > 0]
        self._weights = [w for w in weights if w > 0]

    # --- lifecycle ----------------------------------------------------------------
    async def start(self) -> None:
        self._client = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=httpx.Timeout(self.timeout_s, connect=min(2.0, self.timeout_s)),
            # One connection per user at most: keep-alive through nginx, no queueing
            # inside the client that would look like server latency.
            limits=httpx.Limits(max_connections=self.max_users,
                                max_keepalive_connections=self.max_users),
            headers={"User-Agent": "civicpulse-gameday"},
            transport=self.transport,
        )
        await self.set_users(self.users)

    async def set_users(self, users: int, ramp_s: float = 0.0) -> None:
        """Scale the number of virtual users up or down (a surge and its end)."""
        # The client's connection pool was sized for max_users (httpx cannot resize
        # it): the engine passes the surge's size up front. Beyond it, users queue
        # for connections and the pool timeout shows as client_pool_timeout.
        users = max(0, users)
        self.users = users
        alive = [(t, s) for t, s in self._tasks if not t.done() and not s.is_set()]
        if len(alive) > users:
            for _, stop in alive[users:]:
                stop.set()  # finishes its current request, then leaves
            return
        new = users - len(alive)
        for i in range(new):
            stop = asyncio.Event()
            index = len(self._tasks)
            delay = (ramp_s * i / new) if ramp_s and new else 0.0
            task = asyncio.create_task(self._user(index, stop, delay))
            self._tasks.append((task, stop))

    async def stop(self) -> None:
        self._stop.set()
        tasks = [t for t, _ in self._tasks]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=self.timeout_s + 2)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # --- the users ----------------------------------------------------------------
    async def _user(self, index: int, stop: asyncio.Event, delay: float) -> None:
        rng = random.Random(self.seed * 100_003 + index)
        if delay:
            await asyncio.sleep(delay)
        while not self._stop.is_set() and not stop.is_set() and self._sent < self.max_requests:
            op = rng.choices(self._ops, self._weights)[0]
            await self._one(op, rng)
            if self.think_s:
                await asyncio.sleep(self.think_s * rng.uniform(0.5, 1.5))

    async def _one(self, op: str, rng: random.Random) -> None:
        assert self._client is not None
        if op == "get_user" and not self._acknowledged_ids:
            op = "health"
        self._sent += 1
        req_no = next(self._req)
        write: WriteRecord | None = None
        started = self.clock.now()
        self.inflight[req_no] = started
        try:
            if op == "create_user":
                name = f"{self.prefix}{next(self._seq):07d}"
                # Recorded before sending: if this task dies mid-request, the write
                # stays indeterminate instead of vanishing from the accounting.
                write = WriteRecord(username=name, request_id=name, started=started)
                self.writes.append(write)
                response = await self._client.post(
                    USERS_PATH, json=create_user_body(name, "gameday.invalid"),
                    headers={"X-Request-ID": name})
            elif op == "get_user":
                user_id = recent_user_id(rng, self._acknowledged_ids)
                response = await self._client.get(user_path(user_id),
                                                  headers={"X-Request-ID": f"{self.prefix}r"})
            elif op == "list_audit":
                response = await self._client.get(AUDIT_PATH, params={"limit": 20})
            else:
                response = await self._client.get(HEALTH_PATH)
        except (httpx.HTTPError, OSError, asyncio.CancelledError) as exc:
            outcome, error = classify_exception(exc)
            self._record(op, started, None, outcome, error, write)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        finally:
            self.inflight.pop(req_no, None)
        self._record(op, started, response.status_code, classify_status(response.status_code),
                     None, write, response)

    def _record(self, op: str, started: float, status: int | None, outcome: str,
                error: str | None, write: WriteRecord | None,
                response: httpx.Response | None = None) -> None:
        latency = max(0.0, self.clock.now() - started)
        if error is None and outcome != "ok":
            error = f"http_{status}"
        self.samples.append(RequestSample(started=started, latency_s=latency, op=op,
                                          status=status, outcome=outcome, error=error,
                                          users=self.users))
        self._counts[outcome] = self._counts.get(outcome, 0) + 1
        if write is None:
            return
        write.latency_s = latency
        write.status = status
        write.error = error
        if status == 201:
            write.outcome = "acknowledged"
            try:
                write.user_id = int(response.json()["id"]) if response is not None else None
            except (ValueError, KeyError, TypeError):
                write.user_id = None
            if write.user_id is not None:
                self._acknowledged_ids.append(write.user_id)
        elif status is not None:
            write.outcome = "failed"
        else:
            write.outcome = outcome  # failed (never sent) or indeterminate

    # --- views for the watch loop and the progress display ------------------------
    def oldest_inflight_age(self) -> float | None:
        if not self.inflight:
            return None
        return self.clock.now() - min(self.inflight.values())

    def snapshot(self) -> LoadSnapshot:
        counts = self._counts
        return LoadSnapshot(users=self.users, sent=self._sent, ok=counts["ok"],
                            failed=counts["failed"], indeterminate=counts["indeterminate"],
                            inflight=len(self.inflight),
                            acknowledged_writes=len(self._acknowledged_ids))


def recent(samples: Iterable[RequestSample], since: float) -> list[RequestSample]:
    return [s for s in samples if s.ended >= since]
