"""A Docker engine of the tests' own: a dockerd with its state and socket under the
stack's state directory, stopped afterwards.

Debian's docker.io is installed by ./bootstrap without its daemon (policy-rc.d refuses
it). This one adds nothing to the machine's network: no iptables rules, no docker0
bridge, no IP forwarding or masquerading (`ip_forward` stays as it is, 0 here), so a
container can reach nothing beyond this machine; only ports published on a loopback
address are reachable from it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import docker

DOCKERD_FLAGS = ("--iptables=false", "--ip6tables=false", "--bridge=none", "--ip-forward=false",
                 "--ip-masq=false", "--storage-driver=overlay2")


class EngineError(Exception):
    """The private dockerd could not be started."""


@dataclass
class PrivateEngine:
    root: Path
    process: subprocess.Popen | None = None

    @property
    def socket(self) -> Path:
        return self.root / "docker.sock"

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def start(self, timeout_s: float = 30) -> docker.DockerClient:
        dockerd = shutil.which("dockerd")
        if not dockerd:
            raise EngineError("dockerd is not installed: run ./bootstrap (Debian's docker.io)")
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)
        pidfile = self.root / "docker.pid"
        self._stop_stale(pidfile)
        log = open(self.root / "dockerd.log", "ab")  # noqa: SIM115 - the daemon's stderr
        self.process = subprocess.Popen(
            [dockerd, "--data-root", str(self.root / "data"), "--exec-root",
             str(self.root / "exec"), "--pidfile", str(pidfile), "--host", self.url,
             *DOCKERD_FLAGS], stdout=log, stderr=log, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise EngineError(f"dockerd exited ({self.process.returncode}); see "
                                  f"{self.root / 'dockerd.log'}")
            if self.socket.exists():
                try:
                    # The client asks the daemon for its API version when it is made.
                    client = docker.DockerClient(base_url=self.url, timeout=300)
                    client.ping()
                    return client
                except docker.errors.DockerException:
                    pass
            time.sleep(0.2)
        self.stop()
        raise EngineError(f"dockerd did not answer on {self.url} within {timeout_s:g}s")

    def _stop_stale(self, pidfile: Path) -> None:
        # A dockerd left by a killed test run would hold the data root's lock.
        try:
            pid = int(pidfile.read_text().strip())
            os.kill(pid, signal.SIGTERM)
        except (OSError, ValueError):
            return
        for _ in range(600):  # dockerd stops its containers first
            try:
                os.kill(pid, 0)
            except OSError:
                return
            time.sleep(0.1)

    def stop(self, timeout_s: float = 30) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.unmount_leftovers()

    def mounts(self) -> list[str]:
        """Mount points under the engine's root (dockerd makes its data root a private
        bind mount and keeps a `default` netns mount, and leaves both when it exits)."""
        prefix = str(self.root) + "/"
        with open("/proc/self/mounts") as fh:
            points = [line.split()[1] for line in fh]
        return [p for p in points if p.startswith(prefix)]

    def unmount_leftovers(self) -> None:
        # Deepest first; lazily, so a mount still busy for a moment goes when it frees.
        for point in sorted(self.mounts(), key=len, reverse=True):
            subprocess.run(["umount", "--lazy", point], check=False, capture_output=True,
                           timeout=30)
