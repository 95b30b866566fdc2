"""Faults that edit a service's deployed configuration file and make it re-read the file
(`config_push`, `pgbouncer_client_limit`).

Log-first as every fault: the file's original text goes to the rollback log before the
file is touched. The undo (a handler each kind registers, so that the log names it)
writes the original back into the file it came from, refusing any other path, then
reloads the service the kind's own way.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, ClassVar

from gameday.faults.base import Fault, UndoContext, service_of, write_like
from infra.topology import Service, Topology

ConfigPath = Callable[[Topology, Service], Path]


def restore_original(ctx: UndoContext, undo: dict[str, Any], config_path: ConfigPath,
                     label: str) -> tuple[Service, Path]:
    """The undo's first half: the journaled original text back in its file."""
    svc = service_of(ctx.topology, undo["host"], undo["service"])
    path = config_path(ctx.topology, svc)
    if str(path) != undo["path"]:
        raise ValueError(f"refusing to write {undo['path']}: not {svc.name}'s {label}")
    write_like(path, undo["content"])
    return svc, path


def deployed_files(topology: Topology, services: Iterable[Service],
                   config_path: ConfigPath) -> Iterator[tuple[Service, Path, str]]:
    """(service, file, text) for each service whose deployed file exists (the sweeps)."""
    for svc in services:
        path = config_path(topology, svc)
        if path.is_file():
            yield svc, path, path.read_text(encoding="utf-8")


class ConfigFileFault(Fault):
    #: The undo handler that restores the file (registered by the kind's module).
    restore_handler: ClassVar[str]
    #: What the file is, in messages ("pgbouncer.ini", "configuration").
    file_label: ClassVar[str]

    @staticmethod
    @abstractmethod
    def config_path(topology: Topology, service: Service) -> Path:
        """The deployed file of `service`."""

    @abstractmethod
    def reload(self, service: Service) -> Any:
        """Make the service re-read its file (blocking); what it answered."""

    @property
    def path(self) -> Path:
        return self.config_path(self.ctx.topology, self.service)

    def missing_file(self) -> list[str]:
        """Preflight's complaint when the deployed file is not there."""
        if self.path.is_file():
            return []
        return [f"{self.path} does not exist: {self.kind} edits the deployed "
                f"{self.file_label} of the local target (is the stack deployed locally?)"]

    def read_original(self) -> str:
        """The file's text as deployed, once preflight has nothing against the fault."""
        self.require_preflight()
        return self.path.read_text(encoding="utf-8")

    async def push(self, description: str, original: str, changed: str) -> Any:
        """Journal `original` (the undo writes it back and reloads), then write `changed`
        and reload; what the reload answered."""
        svc, path = self.service, self.path

        def write_and_reload() -> Any:
            write_like(path, changed)
            return self.reload(svc)

        return await self.change_logged(
            description, {"handler": self.restore_handler, "host": svc.host,
                          "service": svc.name, "path": str(path), "content": original},
            write_and_reload)
