"""Alerts as the engine sees them: Alertmanager's webhook, Prometheus' /api/v1/alerts,
and a dead man's switch for when Prometheus itself is gone.

The webhook arrives one of two ways. On the local target the stack has its own
receiver, the notification log (monitoring/alertmanager/notification_log.py, always
listening, so notifications never fail between GameDays); the engine tails its file
and dates each notification by when the receiver got it. Elsewhere the engine listens
on the webhook address itself (`WebhookReceiver`).

Two sources on purpose: polling Prometheus shows pending → firing as it happens (time
to detect); the webhook is what a human would be paged by (time to notify, including
Alertmanager's grouping delays). Both feed one `AlertTracker`, which turns states
into timeline transitions.

The dead man's switch: Prometheus' always-firing `Watchdog` is the heartbeat (seen
through polling or the webhook). When no heartbeat arrives for `timeout_s`, the engine
raises `WatchdogMissing` itself. This is how "Prometheus down" gets detected at all:
no rule can fire when the rule engine is dead.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from gameday.clock import Clock

INACTIVE, PENDING, FIRING = "inactive", "pending", "firing"
_RANK = {INACTIVE: 0, PENDING: 1, FIRING: 2}
WATCHDOG = "Watchdog"
DEADMAN_ALERT = "WatchdogMissing"

#: on_transition(t, alert, source, old_state, new_state)
TransitionHandler = Callable[[float, str, str, str, str], None]


def fingerprint(labels: dict[str, Any]) -> str:
    return json.dumps(labels, sort_keys=True)


class AlertTracker:
    """Per (source, alert name): the states of its label sets, aggregated to the
    worst one; every change of the aggregate is reported once."""

    def __init__(self, clock: Clock, on_transition: TransitionHandler | None = None) -> None:
        self.clock = clock
        self.on_transition = on_transition
        self._instances: dict[tuple[str, str], dict[str, str]] = {}
        self._state: dict[tuple[str, str], str] = {}
        self.history: list[tuple[float, str, str, str, str]] = []
        self.handler_errors: list[str] = []

    def _aggregate(self, key: tuple[str, str]) -> str:
        states = self._instances.get(key, {}).values()
        return max(states, key=lambda s: _RANK[s], default=INACTIVE)

    def _emit(self, key: tuple[str, str], t: float | None) -> None:
        new = self._aggregate(key)
        old = self._state.get(key, INACTIVE)
        if new == old:
            return
        self._state[key] = new
        when = self.clock.now() if t is None else t
        source, alert = key
        self.history.append((when, alert, source, old, new))
        if self.on_transition:
            try:
                self.on_transition(when, alert, source, old, new)
            except Exception as exc:  # noqa: BLE001 - a bad handler must not stop polling
                self.handler_errors.append(f"{type(exc).__name__}: {exc}")

    def set_instance(self, source: str, alert: str, labels_fp: str, state: str,
                     t: float | None = None) -> None:
        key = (source, alert)
        instances = self._instances.setdefault(key, {})
        if state == INACTIVE:
            instances.pop(labels_fp, None)
        else:
            instances[labels_fp] = state
        self._emit(key, t)

    def replace_source(self, source: str, active: dict[str, dict[str, str]],
                       t: float | None = None) -> None:
        """A full snapshot from one source (a Prometheus poll): alert → {fp: state}."""
        names = {a for s, a in self._instances if s == source} | set(active)
        for alert in names:
            self._instances[(source, alert)] = dict(active.get(alert, {}))
            self._emit((source, alert), t)

    def state(self, alert: str, source: str | None = None) -> str:
        states = [s for (src, a), s in self._state.items()
                  if a == alert and (source is None or src == source)]
        return max(states, key=lambda s: _RANK[s], default=INACTIVE)

    def labels_of(self, alert: str) -> dict[str, str]:
        """Labels of one active instance of the alert (firing preferred), for the
        runbook's CP_ALERT_<LABEL> variables."""
        best: tuple[int, str] | None = None
        for (_, name), instances in self._instances.items():
            if name != alert:
                continue
            for fp, state in instances.items():
                if fp and (best is None or _RANK[state] > best[0]):
                    best = (_RANK[state], fp)
        if best is None:
            return {}
        try:
            return {str(k): str(v) for k, v in json.loads(best[1]).items()}
        except ValueError:
            return {}

    def firing_alerts(self) -> list[str]:
        return sorted({a for (_, a), s in self._state.items() if s == FIRING})


def parse_prometheus_alerts(payload: dict[str, Any]) -> dict[str, dict[str, str]]:
    """/api/v1/alerts → alert name → {label fingerprint: pending|firing}."""
    out: dict[str, dict[str, str]] = {}
    for alert in payload.get("data", {}).get("alerts", []):
        labels = alert.get("labels", {})
        name = labels.get("alertname")
        state = alert.get("state")
        if name and state in (PENDING, FIRING):
            out.setdefault(name, {})[fingerprint(labels)] = state
    return out


def parse_webhook(payload: dict[str, Any]) -> list[tuple[str, str, str]]:
    """Alertmanager webhook body → [(alert name, label fingerprint, firing|inactive)]."""
    out = []
    for alert in payload.get("alerts", []):
        labels = alert.get("labels", {})
        name = labels.get("alertname")
        if not name:
            continue
        state = FIRING if alert.get("status") == "firing" else INACTIVE
        out.append((name, fingerprint(labels), state))
    return out


@dataclass
class DeadMansSwitch:
    timeout_s: float
    tracker: AlertTracker
    last_heartbeat: float | None = None
    heartbeats: int = 0

    def heartbeat(self, t: float) -> None:
        self.last_heartbeat = t
        self.heartbeats += 1
        self.tracker.set_instance("deadman", DEADMAN_ALERT, "", INACTIVE, t)

    def check(self, t: float) -> None:
        # Armed by the first heartbeat: without a Watchdog rule there is nothing to miss.
        if self.last_heartbeat is None:
            return
        if t - self.last_heartbeat > self.timeout_s:
            self.tracker.set_instance("deadman", DEADMAN_ALERT, "", FIRING,
                                      self.last_heartbeat + self.timeout_s)


@dataclass
class WebhookReceiver:
    """Alertmanager's webhook target: POST /alerts on exactly the configured address."""

    host: str
    port: int
    on_payload: Callable[[dict[str, Any]], None]
    received: int = 0
    rejected: int = 0
    _server: asyncio.base_events.Server | None = field(default=None, repr=False)

    async def start(self) -> None:
        import ipaddress

        if not ipaddress.ip_address(self.host).is_loopback:
            raise ValueError(f"webhook receiver must bind a loopback address, not {self.host}")
        self._server = await asyncio.start_server(self._handle, self.host, self.port,
                                                  reuse_address=True)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), timeout=2)
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            status = await asyncio.wait_for(self._serve_one(reader), timeout=5)
        except (TimeoutError, ValueError, ConnectionError, asyncio.IncompleteReadError):
            status = 400
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 413: "Too Large"}[status]
        with contextlib.suppress(ConnectionError, OSError):
            writer.write(f"HTTP/1.1 {status} {reason}\r\nContent-Length: 0\r\n"
                         "Connection: close\r\n\r\n".encode())
            await writer.drain()
        writer.close()

    async def _serve_one(self, reader: asyncio.StreamReader) -> int:
        head = await reader.readuntil(b"\r\n\r\n")
        if len(head) > 16384:
            return 413
        lines = head.decode("latin-1").split("\r\n")
        method, path, _ = (lines[0].split(" ", 2) + ["", ""])[:3]
        headers = {k.strip().lower(): v.strip() for k, _, v in
                   (line.partition(":") for line in lines[1:] if line)}
        length = int(headers.get("content-length", "0"))
        if length > 1_000_000:
            self.rejected += 1
            return 413
        body = await reader.readexactly(length) if length else b""
        if method != "POST" or path.split("?")[0] != "/alerts":
            self.rejected += 1
            return 404
        payload = json.loads(body or b"{}")
        self.received += 1
        self.on_payload(payload)
        return 200


@dataclass
class NotificationLogTail:
    """Follows the notification log from where it ended at `start()`: only what
    Alertmanager sends during this run counts. Survives the receiver's rotation
    (`<log>.1`) and waits for a log that does not exist yet."""

    path: Path
    #: on_payload(webhook payload, unix time the receiver got it)
    on_payload: Callable[[dict[str, Any], float | None], None]
    received: int = 0
    malformed: int = 0
    _inode: int | None = field(default=None, repr=False)
    _offset: int = field(default=0, repr=False)

    def start(self) -> None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self._inode, self._offset = None, 0
            return
        self._inode, self._offset = st.st_ino, st.st_size

    def read_new(self) -> int:
        """Hand every complete new line to `on_payload`; returns how many."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return 0
        count = 0
        if self._inode is not None and st.st_ino != self._inode:
            # Rotated: finish the old file (now `<log>.1`) before starting the new one.
            rotated = self.path.with_name(self.path.name + ".1")
            with contextlib.suppress(FileNotFoundError):
                if os.stat(rotated).st_ino == self._inode:
                    count += self._read(rotated, self._offset)[0]
            self._offset = 0
        elif st.st_size < self._offset:
            self._offset = 0  # truncated by hand
        self._inode = st.st_ino
        read, self._offset = self._read(self.path, self._offset)
        return count + read

    def _read(self, path: Path, offset: int) -> tuple[int, int]:
        with path.open("rb") as f:
            f.seek(offset)
            data = f.read()
        end = data.rfind(b"\n") + 1  # a line still being written waits for the next read
        count = 0
        for line in data[:end].splitlines():
            try:
                entry = json.loads(line)
                payload = entry["payload"]
                received_at = entry.get("received_at")
            except (ValueError, KeyError, TypeError):
                self.malformed += 1
                continue
            if not isinstance(payload, dict):
                self.malformed += 1
                continue
            self.received += 1
            count += 1
            self.on_payload(payload, received_at if isinstance(received_at, float | int)
                            else None)
        return count, offset + end

    async def run(self, stop: asyncio.Event, interval_s: float = 0.2) -> None:
        while not stop.is_set():
            with contextlib.suppress(OSError):
                self.read_new()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval_s)
        with contextlib.suppress(OSError):
            self.read_new()


class PrometheusPoller:
    """Polls /api/v1/alerts; feeds the tracker and the dead man's switch."""

    def __init__(self, base_url: str, tracker: AlertTracker, clock: Clock,
                 deadman: DeadMansSwitch | None = None, interval_s: float = 1.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.tracker = tracker
        self.clock = clock
        self.deadman = deadman
        self.interval_s = interval_s
        self.polls = 0
        self.errors = 0
        self.last_error: str | None = None

    async def poll_once(self, client: httpx.AsyncClient) -> None:
        t = self.clock.now()
        try:
            response = await client.get(f"{self.base_url}/api/v1/alerts")
            response.raise_for_status()
            active = parse_prometheus_alerts(response.json())
        except (httpx.HTTPError, ValueError) as exc:
            self.errors += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            if self.deadman:
                self.deadman.check(t)
            return
        self.polls += 1
        self.tracker.replace_source("prometheus", active, t)
        if self.deadman:
            if FIRING in active.get(WATCHDOG, {}).values():
                self.deadman.heartbeat(t)
            self.deadman.check(t)

    async def run(self, stop: asyncio.Event) -> None:
        async with httpx.AsyncClient(timeout=httpx.Timeout(2.0)) as client:
            while not stop.is_set():
                await self.poll_once(client)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=self.interval_s)


async def loaded_alert_names(prometheus_url: str) -> set[str] | None:
    """Names of the alerting rules Prometheus has loaded; None if it cannot be asked."""
    try:
        async with httpx.AsyncClient(timeout=3) as client:
            response = await client.get(f"{prometheus_url.rstrip('/')}/api/v1/rules",
                                        params={"type": "alert"})
            response.raise_for_status()
            groups = response.json()["data"]["groups"]
    except (httpx.HTTPError, ValueError, KeyError):
        return None
    return {rule["name"] for g in groups for rule in g.get("rules", [])
            if rule.get("type") == "alerting"}


async def receiver_down(host: str, port: int) -> str | None:
    """None if the stack's webhook receiver answers its health check, else why not."""
    url = f"http://{host}:{port}/-/healthy"
    try:
        async with httpx.AsyncClient(timeout=2) as client:
            status = (await client.get(url)).status_code
    except httpx.HTTPError as exc:
        status, detail = None, f"{type(exc).__name__}: {exc}"
    if status == 200:
        return None
    why = detail if status is None else f"HTTP {status}"
    return (f"the stack's webhook receiver (notification log) at {url} is not up ({why}): "
            "notification times will be missing; check `invoke status`")


class AlertSources:
    """Webhook (received or read from the notification log) + poller + dead man's
    switch, one set per GameDay run."""

    def __init__(self, webhook: tuple[str, int], prometheus_url: str, clock: Clock,
                 on_transition: TransitionHandler, poll_interval_s: float = 1.0,
                 deadman_timeout_s: float = 10.0, notification_log: Path | None = None) -> None:
        self.tracker = AlertTracker(clock, on_transition)
        self.deadman = DeadMansSwitch(deadman_timeout_s, self.tracker)
        self.clock = clock
        self.webhook = webhook
        self.receiver: WebhookReceiver | None = None
        self.tail: NotificationLogTail | None = None
        if notification_log is None:
            self.receiver = WebhookReceiver(webhook[0], webhook[1], self._on_webhook)
        else:
            self.tail = NotificationLogTail(notification_log, self._on_logged)
        self.poller = PrometheusPoller(prometheus_url, self.tracker, clock, self.deadman,
                                       poll_interval_s)
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.webhook_error: str | None = None

    def _on_webhook(self, payload: dict[str, Any], t: float | None = None) -> None:
        t = self.clock.now() if t is None else t
        for name, fp, state in parse_webhook(payload):
            self.tracker.set_instance("webhook", name, fp, state, t)
            if name == WATCHDOG and state == FIRING:
                self.deadman.heartbeat(t)

    def _on_logged(self, payload: dict[str, Any], received_at: float | None) -> None:
        # Dated by the receiver, not by when the tail happened to read the line.
        now = self.clock.now()
        age = 0.0 if received_at is None else max(0.0, time.time() - received_at)
        self._on_webhook(payload, max(0.0, now - age))

    async def start(self) -> None:
        if self.receiver is not None:
            try:
                await self.receiver.start()
            except OSError as exc:
                # Not fatal: detection still works through polling; notification times
                # will be missing and the report says why.
                self.webhook_error = (f"cannot listen on {self.receiver.host}:"
                                      f"{self.receiver.port} for Alertmanager's webhook: {exc}")
        if self.tail is not None:
            self.tail.start()
            # Ask the receiver itself (it creates its log when it starts): a missing
            # file only meant "no page yet" and warned after every fresh deploy.
            self.webhook_error = await receiver_down(*self.webhook)
            self._tasks.append(asyncio.create_task(self.tail.run(self._stop)))
        self._tasks.append(asyncio.create_task(self.poller.run(self._stop)))

    async def stop(self) -> None:
        self._stop.set()
        for task in self._tasks:
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(task, timeout=5)
        if self.receiver is not None:
            await self.receiver.stop()
