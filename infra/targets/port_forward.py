"""A port on this machine's loopback relayed to a service no port is published for.

What `kubectl port-forward` does for a pod: each connection to the local port gets a
process (here `docker exec -i <container> bash -c '…/dev/tcp/…'`) whose stdin and
stdout carry the connection's bytes to the service inside its network namespace. The
GameDay engine reads the database this way on the docker target, where only nginx
(and Prometheus) are published; nothing listens beyond 127.0.0.1, and everything
stops when the context closes.

Written here because nothing packaged fits: the Docker CLI has no port-forward, and
`socat` would have to be in every image.
"""

from __future__ import annotations

import socket
import subprocess
import threading
from collections.abc import Callable, Sequence

#: Runs the relay inside the container: bash's /dev/tcp to the service, both ways.
RELAY = 'exec 3<>"/dev/tcp/127.0.0.1/$0" && { cat <&3 & cat >&3; kill $! 2>/dev/null; }'


def relay_command(prefix: Sequence[str], port: int) -> list[str]:
    """`prefix` (e.g. `docker exec -i <container>`) running the relay to `port`."""
    return [*prefix, "bash", "-c", RELAY, str(port)]


class PortForward:
    """Listens on 127.0.0.1:<ephemeral>; each connection is relayed by its own process."""

    def __init__(self, command: Callable[[], list[str]], max_connections: int = 16) -> None:
        self._command = command
        self._max = max_connections
        self._server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(self._max)
        self.address: tuple[str, int] = self._server.getsockname()
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._procs: list[subprocess.Popen] = []
        self._thread = threading.Thread(target=self._accept, daemon=True,
                                        name="port-forward")

    def __enter__(self) -> tuple[str, int]:
        self._thread.start()
        return self.address

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._closed.set()
        try:
            # Wakes the accept() blocked in the thread (close() alone would not).
            self._server.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._server.close()
        self._thread.join(5)
        with self._lock:
            procs = list(self._procs)
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            with self._lock:
                self._procs = [p for p in self._procs if p.poll() is None]
                if len(self._procs) >= self._max:
                    conn.close()  # bounded: a client that leaks connections gets refused
                    continue
                proc = subprocess.Popen(self._command(), stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
                self._procs.append(proc)
            threading.Thread(target=self._pump_in, args=(conn, proc), daemon=True).start()
            threading.Thread(target=self._pump_out, args=(conn, proc), daemon=True).start()

    @staticmethod
    def _pump_in(conn: socket.socket, proc: subprocess.Popen) -> None:
        assert proc.stdin is not None
        try:
            while data := conn.recv(65536):
                proc.stdin.write(data)
                proc.stdin.flush()
        except OSError:
            pass
        finally:
            try:
                proc.stdin.close()
            except OSError:
                pass

    @staticmethod
    def _pump_out(conn: socket.socket, proc: subprocess.Popen) -> None:
        assert proc.stdout is not None
        try:
            while data := proc.stdout.read1(65536):
                conn.sendall(data)
        except OSError:
            pass
        finally:
            conn.close()
            if proc.poll() is None:
                proc.kill()
