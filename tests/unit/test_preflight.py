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
