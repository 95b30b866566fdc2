"""The loopback relay the docker target reads the database through, against a real
echo server on this machine (the relay command is bash's /dev/tcp, as in a container)."""

from __future__ import annotations

import socket
import threading

from infra.targets.port_forward import PortForward, relay_command


def _echo_server() -> tuple[socket.socket, int]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                while data := conn.recv(4096):
                    conn.sendall(data.upper())

    threading.Thread(target=serve, daemon=True).start()
    return server, server.getsockname()[1]


def test_each_connection_is_relayed_both_ways_and_everything_stops_at_close():
    server, port = _echo_server()
    forward = PortForward(lambda: relay_command([], port))
    with forward as (host, local_port):
        assert host == "127.0.0.1" and local_port != port
        for word in (b"hello", b"again"):
            with socket.create_connection((host, local_port), timeout=5) as conn:
                conn.sendall(word)
                assert conn.recv(100) == word.upper()
    with socket.socket() as probe:
        assert probe.connect_ex((host, local_port)) != 0  # nothing listens any more
    assert forward._procs and all(p.poll() is not None for p in forward._procs)
    server.close()
