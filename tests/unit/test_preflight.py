"""Preflight's port check: a live listener is a conflict, a TIME-WAIT is not."""

from __future__ import annotations

import errno
import socket

from infra.preflight import bind_error

ADDRESS = "127.0.97.1"


def _listener() -> socket.socket:
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((ADDRESS, 0))
    srv.listen()
    return srv


def test_live_listener_is_reported():
    srv = _listener()
    try:
        error = bind_error(ADDRESS, srv.getsockname()[1])
        assert error is not None and error.errno == errno.EADDRINUSE
    finally:
        srv.close()


def test_time_wait_left_by_a_closed_server_is_not_a_conflict():
    srv = _listener()
    port = srv.getsockname()[1]
    client = socket.create_connection((ADDRESS, port))
    conn, _ = srv.accept()
    conn.close()  # the side that closes first keeps the TIME-WAIT: the server's address
    client.recv(1)
    client.close()
    srv.close()
    plain = socket.socket()
    try:
        # Precondition: without SO_REUSEADDR this port is still blocked.
        try:
            plain.bind((ADDRESS, port))
            blocked = False
        except OSError:
            blocked = True
    finally:
        plain.close()
    assert blocked, "no TIME-WAIT was left; the test proves nothing"
    assert bind_error(ADDRESS, port) is None


def test_a_held_webhook_port_is_named_with_its_fix(tmp_path):
    """The alertmanager host's webhook receiver (the notification log) needs its port
    too; a stranger on it is reported before anything is deployed."""
    import yaml

    from infra.preflight import port_conflicts
    from infra.topology import load_stack, stack_path

    data = yaml.safe_load(stack_path("lab").read_text())
    data["stack"] = "preflighttest"  # no state directory: no supervisord of ours
    for n, host in enumerate(data["hosts"].values(), start=1):
        host["address"] = f"127.0.97.{n}"
    monitor = data["hosts"]["monitor"]["address"]
    srv = socket.socket()
    srv.bind((monitor, 0))
    srv.listen()
    try:
        data["monitoring"]["webhook_port"] = srv.getsockname()[1]
        path = tmp_path / "stack.yaml"
        path.write_text(yaml.safe_dump(data))
        problems = port_conflicts(load_stack(path))
    finally:
        srv.close()
    assert len(problems) == 1, problems
    assert "(monitor/notification_log) is already in use" in problems[0]
    assert "monitoring.webhook_port" in problems[0]
