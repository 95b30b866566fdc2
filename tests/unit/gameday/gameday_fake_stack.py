"""A fake CivicPulse stack on loopback for engine tests: an app behind "nginx", a
Prometheus answering /api/v1/alerts, and an "Alertmanager" posting webhooks.

The fake target flips the fake stack's state (stopping "redis" makes the app
degraded and RedisDown fire), so the whole engine runs for real: load, probes, alert
sources, webhook receiver, runbook, rollback log, report. Only the database read
of the reconciliation is replaced (by the fake app's own tables).
"""

from __future__ import annotations

import re
import textwrap
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
from fake_http import JsonHandler
from gameday_fakes import FakeTarget

from gameday.reconcile import AuditRow, UserRow
from infra.topology import Service, Topology, load_stack

NET = "127.0.13"


@dataclass
class FakeState:
    redis_down: bool = False
    healthy: bool = True
    #: Acknowledge writes but do not store them while Redis is down (a planted bug).
    lose_writes_when_degraded: bool = False
    users: dict[str, int] = field(default_factory=dict)
    audit: list[tuple[int, str, int, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def rows(self, prefix: str) -> tuple[list[UserRow], list[AuditRow]]:
        with self.lock:
            users = [UserRow(i, n) for n, i in self.users.items() if n.startswith(prefix)]
            ids = {u.id for u in users}
            events = [AuditRow(*e) for e in self.audit if e[2] in ids or e[3].startswith(prefix)]
        return users, events


def _handler(state: FakeState, role: str) -> type[BaseHTTPRequestHandler]:
    class Handler(JsonHandler):
        def do_GET(self) -> None:  # noqa: N802
            if role == "app":
                if self.path.startswith("/civicpulse/health/"):
                    if not state.healthy:
                        return self.send_json(503, {"status": "down"})
                    return self.send_json(200, {"status": "degraded" if state.redis_down
                                            else "ok"})
                if re.match(r"^/api/users/\d+/$", self.path):
                    return self.send_json(200, {"id": 1})
                if self.path.startswith("/api/audit/"):
                    return self.send_json(200, {"events": [], "next_after": 0})
                return self.send_json(404, {})
            if self.path.startswith("/api/v1/alerts"):
                alerts = [{"labels": {"alertname": "Watchdog"}, "state": "firing"}]
                if state.redis_down:
                    alerts.append({"labels": {"alertname": "RedisDown", "host": "cache"},
                                   "state": "firing"})
                return self.send_json(200, {"status": "success", "data": {"alerts": alerts}})
            if self.path.startswith("/api/v1/rules"):
                rules = [{"name": n, "type": "alerting"} for n in ("Watchdog", "RedisDown")]
                return self.send_json(200, {"data": {"groups": [{"rules": rules}]}})
            if self.path.startswith("/api/v1/query"):
                return self.send_json(200, {"data": {"resultType": "vector", "result": [
                    {"value": [0, "0"]}]}})
            return self.send_json(404, {})

        def do_POST(self) -> None:  # noqa: N802
            body = self.read_json()
            name = body["username"]
            with state.lock:
                user_id = 1000 + len(state.users) + 1
                if not (state.lose_writes_when_degraded and state.redis_down):
                    state.users[name] = user_id
                    state.audit.append((len(state.audit) + 1, "user.created", user_id,
                                        self.headers["X-Request-ID"]))
            time.sleep(0.002)
            return self.send_json(201, {"id": user_id, **body})

    return Handler


class FakeStack:
    def __init__(self, tmp_path: Path) -> None:
        self.state = FakeState()
        self.app = ThreadingHTTPServer((f"{NET}.110", 0), _handler(self.state, "app"))
        self.prom = ThreadingHTTPServer((f"{NET}.150", 0), _handler(self.state, "prom"))
        self.threads = [threading.Thread(target=s.serve_forever, daemon=True)
                        for s in (self.app, self.prom)]
        for thread in self.threads:
            thread.start()
        stack = textwrap.dedent(f"""\
            stack: gdfake
            state_dir: {tmp_path / 'state'}
            hosts:
              edge: {{address: {NET}.110, services: [{{name: nginx, port: {self.app.server_port}}}]}}
              app1: {{address: {NET}.121, services: [app]}}
              pool: {{address: {NET}.131, services: [pgbouncer]}}
              db: {{address: {NET}.132, services: [postgresql]}}
              cache: {{address: {NET}.141, services: [redis]}}
              monitor:
                address: {NET}.150
                services: [{{name: prometheus, port: {self.prom.server_port}}}, alertmanager]
            monitoring: {{webhook_port: {_free_port(f"{NET}.150")}}}
            """)  # noqa: E501
        path = tmp_path / "gdfake.yaml"
        path.write_text(stack)
        self.topology: Topology = load_stack(path)
        self._stop = threading.Event()
        self._am = threading.Thread(target=self._alertmanager, daemon=True)
        self._am.start()

    def _alertmanager(self) -> None:
        """Post RedisDown firing/resolved to the engine's webhook, like Alertmanager."""
        url = f"http://{self.topology.webhook_endpoint}/alerts"
        last = None
        while not self._stop.is_set():
            status = "firing" if self.state.redis_down else "resolved"
            if status != last:
                try:
                    httpx.post(url, json={"alerts": [{"status": status, "labels": {
                        "alertname": "RedisDown", "host": "cache"}}]}, timeout=1)
                    last = status
                except httpx.HTTPError:
                    pass  # the engine's receiver is not up (between scenarios)
            time.sleep(0.2)

    def close(self) -> None:
        self._stop.set()
        for server in (self.app, self.prom):
            server.shutdown()
            server.server_close()


def _free_port(address: str) -> int:
    import socket

    with socket.socket() as s:
        s.bind((address, 0))
        return s.getsockname()[1]


class FakeStackTarget(FakeTarget):
    """Stopping redis breaks the fake stack the way the real one would look."""

    def __init__(self, stack: FakeStack) -> None:
        super().__init__(stack.topology)
        self.stack = stack

    def stop(self, service: Service) -> None:
        super().stop(service)
        if service.name == "redis":
            self.stack.state.redis_down = True

    def start(self, service: Service) -> None:
        super().start(service)
        if service.name == "redis":
            self.stack.state.redis_down = False
