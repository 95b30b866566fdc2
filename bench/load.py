"""The load generator: N concurrent user loops in one asyncio process (aiohttp).

aiohttp rather than httpx: on this box httpx's AsyncClient spent ~1.3 ms of CPU per
request, aiohttp ~0.09 ms, and on two cores every millisecond the client burns is
taken from the servers it measures. Each loop reuses its connection where the server
keeps it (nginx does; Gunicorn's sync workers close after every response, so aiohttp
reconnects, as nginx itself must). The process's own CPU time is recorded per point
so the report can show the client was not the bottleneck.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import random
import resource
import time
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import aiohttp

from bench.options import READ_MIX, REPORT_PATTERN, VARIANTS
from bench.stats import OK, classify_status
from infra.app_api import USERS_PATH, create_user_body, recent_user_id, user_path

CREATE_PATH = USERS_PATH
#: The report's read-then-write ORM create, served only where the benchmark enables it.
REPORT_PATTERN_PATH = "/api/report-pattern/users/"
#: The app names the database's lock error here on a 503 (report pattern only).
DB_ERROR_HEADER = "X-Database-Error"
#: read-mix: one create, then this many reads of users created in the same point.
READS_PER_WRITE = 4


@dataclass(frozen=True)
class LoadSpec:
    base_url: str
    users: int
    duration_s: float
    max_requests: int
    timeout_s: float
    variant: str
    #: Username prefix unique to this point: the row counts afterwards select by it.
    prefix: str


@dataclass
class LoadOutcome:
    kinds: Counter[str] = field(default_factory=Counter)
    latencies_s: list[float] = field(default_factory=list)
    ok_latencies_s: list[float] = field(default_factory=list)
    created: int = 0
    #: Database errors the app named in its 503 responses ("database is locked", …).
    db_errors: Counter[str] = field(default_factory=Counter)
    issued: int = 0
    elapsed_s: float = 0.0
    client_cpu_s: float = 0.0

    @property
    def requests(self) -> int:
        return sum(self.kinds.values())

    @property
    def ok(self) -> int:
        return self.kinds.get(OK, 0)


def require_loopback(url: str) -> None:
    """Refuse any target that is not a literal loopback address."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"load target must be http://ADDRESS:PORT, got {url!r}")
    try:
        addr = ipaddress.ip_address(parts.hostname)
    except ValueError:
        raise ValueError(f"load target must be a literal loopback address, got {url!r}") from None
    if not addr.is_loopback:
        raise ValueError(f"refusing non-loopback load target {url!r}")


def classify_exception(exc: BaseException) -> str:
    # Order matters: ClientConnectorError is a ClientOSError, and aiohttp's timeouts
    # subclass both TimeoutError and ClientError.
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "connect_error"
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientOSError | OSError):
        return "disconnected"
    if isinstance(exc, aiohttp.ClientPayloadError | aiohttp.ClientResponseError):
        return "bad_response"
    return f"client_error:{type(exc).__name__}"


def raise_fd_limit(wanted: int) -> None:
    """Each user holds a socket; lift the soft limit towards the hard one if needed."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


class _Run:
    def __init__(self, spec: LoadSpec, deadline: float) -> None:
        self.spec = spec
        self.deadline = deadline
        self.out = LoadOutcome()
        self.ids: list[int] = []
        self.create_path = REPORT_PATTERN_PATH if spec.variant == REPORT_PATTERN else CREATE_PATH

    def may_issue(self) -> bool:
        return self.out.issued < self.spec.max_requests and time.monotonic() < self.deadline

    def record(self, kind: str, latency: float) -> None:
        self.out.kinds[kind] += 1
        self.out.latencies_s.append(latency)
        if kind == OK:
            self.out.ok_latencies_s.append(latency)

    async def create(self, session: aiohttp.ClientSession, user: int, seq: int) -> None:
        name = f"{self.spec.prefix}{user}.{seq}"
        payload = create_user_body(name, "example.org")
        start = time.perf_counter()
        try:
            async with session.post(self.create_path, json=payload) as resp:
                body = await resp.read()
                kind = classify_status(resp.status, 201)
                db_error = resp.headers.get(DB_ERROR_HEADER)
        except Exception as exc:  # every failure is a measured outcome
            self.record(classify_exception(exc), time.perf_counter() - start)
            return
        self.record(kind, time.perf_counter() - start)
        if db_error:
            self.out.db_errors[db_error] += 1
        if kind == OK:
            self.out.created += 1
            if self.spec.variant == READ_MIX:
                self.ids.append(json.loads(body)["id"])

    async def read(self, session: aiohttp.ClientSession, rng: random.Random) -> None:
        user_id = recent_user_id(rng, self.ids)
        start = time.perf_counter()
        try:
            async with session.get(user_path(user_id)) as resp:
                await resp.read()
                kind = classify_status(resp.status, 200)
        except Exception as exc:
            kind = classify_exception(exc)
        self.record(kind, time.perf_counter() - start)

    async def user_loop(self, session: aiohttp.ClientSession, user: int) -> None:
        rng = random.Random(user)
        seq = 0
        while self.may_issue():
            self.out.issued += 1
            reading = (self.spec.variant == READ_MIX and seq % (READS_PER_WRITE + 1) != 0
                       and self.ids)
            if reading:
                await self.read(session, rng)
            else:
                await self.create(session, user, seq)
            seq += 1


async def _run(spec: LoadSpec) -> LoadOutcome:
    # One connection per user: N users are N concurrent in-flight requests, never
    # more, and no user waits for a pooled connection held by another.
    connector = aiohttp.TCPConnector(limit=spec.users, limit_per_host=0,
                                     enable_cleanup_closed=False)
    timeout = aiohttp.ClientTimeout(total=spec.timeout_s)
    started = time.monotonic()
    run = _Run(spec, started + spec.duration_s)
    async with aiohttp.ClientSession(base_url=spec.base_url, connector=connector,
                                     timeout=timeout, auto_decompress=False) as session:
        await asyncio.gather(*(run.user_loop(session, u) for u in range(spec.users)))
    run.out.elapsed_s = time.monotonic() - started
    return run.out


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_load(spec: LoadSpec) -> LoadOutcome:
    """Run one point to completion: stops issuing at the duration or the request cap,
    then waits for requests in flight (each bounded by the timeout)."""
    require_loopback(spec.base_url)
    if spec.variant not in VARIANTS:
        raise ValueError(f"unknown variant {spec.variant!r}")
    raise_fd_limit(spec.users + 256)
    cpu_before = _cpu_s()
    outcome = asyncio.run(_run(spec))
    outcome.client_cpu_s = _cpu_s() - cpu_before
    return outcome
