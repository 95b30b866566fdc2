"""Small helpers shared by the app tests: metric parsing and network fault doubles."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from typing import Any

from civicpulse_stack import HOST
from prometheus_client.parser import text_string_to_metric_families


def metric_value(text: str, sample_name: str, **labels: str) -> float:
    """Sum of the samples called `sample_name` whose labels include `labels` (0 if none)."""
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == sample_name and all(
                    sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def metric_families(text: str) -> dict[str, Any]:
    return {family.name: family for family in text_string_to_metric_families(text)}


@contextlib.contextmanager
def blackhole(host: str = HOST) -> Iterator[int]:
    """A port that completes TCP handshakes but never answers: a partitioned peer.

    The kernel accepts connections into the backlog, so clients connect fine and
    then wait forever for a reply, exactly as with a dropped-packets partition
    after the handshake.
    """
    with socket.socket() as sock:
        sock.bind((host, 0))
        sock.listen(128)
        yield sock.getsockname()[1]


def closed_port(host: str = HOST) -> int:
    """A port with nothing listening (connection refused)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]
