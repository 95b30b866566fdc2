"""A TCP fault proxy (Toxiproxy's model) for latency in the data path.

There is no netem on these machines (DESIGN §2), so fixed latency needs something in
the path. This proxy accepts connections, opens one upstream per client, and delays
the bytes of one or both directions by `latency ± jitter` while keeping their order
(chunks are stamped on arrival and released at arrival + delay, like Toxiproxy's
latency toxic; a per-chunk sleep in the pipe loop would also throttle bandwidth).

It runs as a separate process (standard library only, started with the engine's
interpreter and this file's path) so that its timing does not share an event loop
with 200 virtual users, and so that it can outlive nothing: it exits after
`--max-lifetime-s`, and with `--on-expiry-delete-nft-table` first deletes the
GameDay's nftables table, so a redirect can never point at a dead proxy for long even
if the engine was SIGKILLed. SIGTERM: stop accepting, drop the delay to zero, let open
connections finish for up to `--drain-s`, exit.

Protocol: the first stdout line is `LISTENING <address> <port>`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import signal
import subprocess
import sys

CHUNK = 65536


class Toxics:
    def __init__(self, latency_ms: float, jitter_ms: float, direction: str) -> None:
        self.latency_ms = latency_ms
        self.jitter_ms = jitter_ms
        self.direction = direction

    def delay_s(self, direction: str) -> float:
        if self.direction not in (direction, "both") or self.latency_ms <= 0:
            return 0.0
        jitter = random.uniform(-self.jitter_ms, self.jitter_ms) if self.jitter_ms else 0.0
        return max(0.0, self.latency_ms + jitter) / 1000.0


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, toxics: Toxics,
                direction: str) -> None:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes | None]] = asyncio.Queue(maxsize=256)

    async def read_side() -> None:
        try:
            while data := await reader.read(CHUNK):
                await queue.put((loop.time() + toxics.delay_s(direction), data))
        except (ConnectionError, OSError):
            pass
        await queue.put((loop.time() + toxics.delay_s(direction), None))

    async def write_side() -> None:
        while True:
            due, data = await queue.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if data is None:
                with contextlib.suppress(OSError, RuntimeError):
                    if writer.can_write_eof():
                        writer.write_eof()
                return
            writer.write(data)
            await writer.drain()

    reader_task = asyncio.ensure_future(read_side())
    try:
        await write_side()
    except (ConnectionError, OSError):
        pass
    finally:
        reader_task.cancel()


class Proxy:
    def __init__(self, upstream: tuple[str, int], toxics: Toxics) -> None:
        self.upstream = upstream
        self.toxics = toxics
        self.connections: set[asyncio.Task[None]] = set()
        self.accepted = 0

    async def handle(self, client_r: asyncio.StreamReader,
                     client_w: asyncio.StreamWriter) -> None:
        self.accepted += 1
        task = asyncio.current_task()
        assert task is not None
        self.connections.add(task)
        try:
            try:
                up_r, up_w = await asyncio.wait_for(
                    asyncio.open_connection(*self.upstream), timeout=5)
            except (TimeoutError, OSError):
                client_w.close()
                return
            await asyncio.gather(_pipe(client_r, up_w, self.toxics, "upstream"),
                                 _pipe(up_r, client_w, self.toxics, "downstream"))
            for w in (client_w, up_w):
                w.close()
        finally:
            self.connections.discard(task)


def delete_nft_table(table: str) -> None:
    subprocess.run(["/usr/sbin/nft", "delete", "table", "inet", table],
                   capture_output=True, check=False, timeout=10)


async def serve(args: argparse.Namespace) -> int:
    host, port = args.listen.rsplit(":", 1)
    up_host, up_port = args.upstream.rsplit(":", 1)
    toxics = Toxics(args.latency_ms, args.jitter_ms, args.direction)
    proxy = Proxy((up_host, int(up_port)), toxics)
    server = await asyncio.start_server(proxy.handle, host, int(port), reuse_address=True)
    bound = server.sockets[0].getsockname()
    print(f"LISTENING {bound[0]} {bound[1]}", flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    expired = False
    try:
        await asyncio.wait_for(stop.wait(), timeout=args.max_lifetime_s)
    except TimeoutError:
        expired = True
        if args.on_expiry_delete_nft_table:
            delete_nft_table(args.on_expiry_delete_nft_table)
    server.close()
    toxics.latency_ms = toxics.jitter_ms = 0
    deadline = loop.time() + args.drain_s
    while proxy.connections and loop.time() < deadline:
        await asyncio.sleep(0.1)
    for task in list(proxy.connections):
        task.cancel()
    print(f"EXIT accepted={proxy.accepted} expired={expired}", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True, help="address:port (port 0: any free)")
    parser.add_argument("--upstream", required=True, help="address:port")
    parser.add_argument("--latency-ms", type=float, default=0)
    parser.add_argument("--jitter-ms", type=float, default=0)
    parser.add_argument("--direction", choices=("downstream", "upstream", "both"),
                        default="downstream")
    parser.add_argument("--max-lifetime-s", type=float, required=True)
    parser.add_argument("--drain-s", type=float, default=5)
    parser.add_argument("--on-expiry-delete-nft-table", metavar="TABLE", default="",
                        help="the GameDay's nft table (inet) to delete on expiry")
    parser.add_argument("--marker", default="", help="tag in argv for cleanup to find us")
    args = parser.parse_args(argv)
    return asyncio.run(serve(args))


if __name__ == "__main__":
    sys.exit(main())
