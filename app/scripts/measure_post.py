#!/usr/bin/env python3
"""Measure POST /api/users/ throughput and latency against a local CivicPulse server.

    python app/scripts/measure_post.py --url http://127.0.0.1:8000 \
        --concurrency 50 --duration 15 --max-requests 5000

Bounded in both time and count, and refuses any target outside loopback. The load
generator is a single asyncio process writing raw HTTP/1.1 (one connection per
request, as nginx -> gunicorn sync does), so it spends far less CPU per request
than the server it measures; on a 2-core host it still competes for CPU, which the
numbers include. Prints a JSON summary; exits 1 if any request failed.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import socket
import sys
import time
import uuid
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)
    issued: int = 0

    def add(self, status: str, latency: float) -> None:
        self.statuses[status] = self.statuses.get(status, 0) + 1
        if status == "201":
            self.latencies.append(latency)


def loopback_target(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise SystemExit(f"--url must be http://HOST:PORT, got {url!r}")
    port = parts.port or 80
    for info in socket.getaddrinfo(parts.hostname, port, proto=socket.IPPROTO_TCP):
        if not ipaddress.ip_address(info[4][0]).is_loopback:
            raise SystemExit(f"refusing non-loopback target {info[4][0]} ({url})")
    return parts.hostname, port


def percentile(sorted_values: list[float], pct: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(pct / 100 * len(sorted_values)) - 1))
    return sorted_values[index]


async def one_request(host: str, port: int, payload: bytes, timeout: float) -> str:
    request = (
        f"POST /api/users/ HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode() + payload
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    try:
        writer.write(request)
        status_line = await asyncio.wait_for(reader.readline(), timeout)
        # Drain the rest so the server never sees a reset mid-response.
        await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
    parts = status_line.split()
    return parts[1].decode() if len(parts) >= 2 else "bad-response"


async def client(host: str, port: int, prefix: str, tally: Tally, deadline: float,
                 max_requests: int, timeout: float) -> None:
    while tally.issued < max_requests and time.monotonic() < deadline:
        n = tally.issued
        tally.issued += 1
        payload = json.dumps({"username": f"{prefix}_{n}",
                              "email": f"{prefix}.{n}@example.org"}).encode()
        start = time.perf_counter()
        try:
            status = await one_request(host, port, payload, timeout)
        except (TimeoutError, OSError) as exc:
            status = type(exc).__name__
        tally.add(status, time.perf_counter() - start)


async def run(args: argparse.Namespace) -> dict[str, object]:
    host, port = loopback_target(args.url)
    prefix = args.prefix or f"bench{uuid.uuid4().hex[:8]}"
    tally = Tally()
    started = time.monotonic()
    deadline = started + args.duration
    await asyncio.gather(*(
        client(host, port, prefix, tally, deadline, args.max_requests, args.timeout)
        for _ in range(args.concurrency)))
    elapsed = time.monotonic() - started
    latencies = sorted(tally.latencies)
    ok = len(latencies)
    return {
        "url": args.url,
        "concurrency": args.concurrency,
        "requests": sum(tally.statuses.values()),
        "created": ok,
        "errors": sum(tally.statuses.values()) - ok,
        "statuses": tally.statuses,
        "elapsed_s": round(elapsed, 3),
        "requests_per_s": round(ok / elapsed, 1) if elapsed else 0.0,
        "latency_ms": {
            "p50": round(percentile(latencies, 50) * 1000, 2),
            "p90": round(percentile(latencies, 90) * 1000, 2),
            "p99": round(percentile(latencies, 99) * 1000, 2),
            "max": round(latencies[-1] * 1000, 2) if latencies else None,
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="loopback base URL")
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--duration", type=float, default=15.0, help="seconds (upper bound)")
    parser.add_argument("--max-requests", type=int, default=5000, help="upper bound")
    parser.add_argument("--timeout", type=float, default=10.0, help="per request, seconds")
    parser.add_argument("--prefix", default="", help="username prefix (default: random)")
    args = parser.parse_args(argv)
    if not (1 <= args.concurrency <= 1000 and 0 < args.duration <= 300
            and 1 <= args.max_requests <= 100_000):
        parser.error("need 1 <= concurrency <= 1000, 0 < duration <= 300, "
                     "1 <= max-requests <= 100000")
    summary = asyncio.run(run(args))
    print(json.dumps(summary, indent=2))
    return 0 if summary["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
