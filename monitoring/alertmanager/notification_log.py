"""The lab's pager: receives Alertmanager's webhook and appends every notification to a
JSON-lines log, one `{"received_at": <unix time>, "payload": {...}}` per line.

Why it exists: Alertmanager has no file receiver, and Debian packages no webhook sink.
Without a listener on the stack's webhook address every notification fails and
AlertmanagerNotificationsFailing fires for as long as no GameDay runs. With it, the
GameDay engine reads pages from this log (gameday/alerts.py, NotificationLogTail),
and an operator can see what would have paged them and when.

Runs under the alertmanager host's supervisord as Alertmanager's user, with Debian's
python3 and the standard library only (nothing to install on the host). The log is
rotated at `--max-bytes` (one previous file kept), so it cannot fill the disk.

    python3 notification_log.py --listen 127.0.10.50:9099 --log /…/notifications.jsonl
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

MAX_BODY = 1_000_000


class NotificationLog:
    """Appends notifications to a file; rotates it to `<name>.1` past `max_bytes`."""

    def __init__(self, path: Path, max_bytes: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        # Exists from the start: "no notification yet" is an empty log, not a missing one.
        self.path.touch(exist_ok=True)

    def append(self, payload: dict) -> None:
        line = json.dumps({"received_at": time.time(), "payload": payload},
                          separators=(",", ":"), sort_keys=True) + "\n"
        with self._lock:
            try:
                size = self.path.stat().st_size
            except FileNotFoundError:
                size = 0
            if size and size + len(line) > self.max_bytes:
                os.replace(self.path, self.path.with_name(self.path.name + ".1"))
            # One write of a whole line: a reader never sees half a notification
            # followed by another one.
            with self.path.open("a", encoding="utf-8") as f:
                f.write(line)


def handler_for(log: NotificationLog) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "civicpulse-notification-log"

        def _reply(self, status: int) -> None:
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            self._reply(200 if self.path == "/-/healthy" else 404)

        def do_POST(self) -> None:  # noqa: N802
            if self.path.split("?")[0] != "/alerts":
                self._reply(404)
                return
            try:
                length = int(self.headers.get("Content-Length", "0"))
            except ValueError:
                self._reply(400)
                return
            if not 0 < length <= MAX_BODY:
                self._reply(413 if length > MAX_BODY else 400)
                return
            try:
                payload = json.loads(self.rfile.read(length))
            except ValueError:
                self._reply(400)
                return
            if not isinstance(payload, dict) or not isinstance(payload.get("alerts"), list):
                self._reply(400)
                return
            log.append(payload)
            self._reply(200)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass  # every notification is in the log already; no access log on stderr

    return Handler


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a stuck client must not keep a stopping receiver alive
    request_queue_size = 64  # Alertmanager sends one request per group at once


def serve(host: str, port: int, log: NotificationLog) -> ThreadingHTTPServer:
    """A bound server (call serve_forever); only loopback addresses are accepted."""
    if not ipaddress.ip_address(host).is_loopback:
        raise ValueError(f"the notification log listens on loopback only, not {host}")
    return _Server((host, port), handler_for(log))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True, help="ADDRESS:PORT (loopback)")
    parser.add_argument("--log", required=True, type=Path, help="JSON-lines file to append to")
    parser.add_argument("--max-bytes", type=int, default=10 * 2**20)
    args = parser.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    try:
        server = serve(host, int(port), NotificationLog(args.log, args.max_bytes))
    except (ValueError, OSError) as exc:
        print(f"notification_log: cannot listen on {args.listen}: {exc}", file=sys.stderr)
        return 2
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
