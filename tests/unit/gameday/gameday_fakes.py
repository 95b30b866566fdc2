"""A fake target driver: records every call and what the rollback log held at that moment."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from gameday.faults import fault_class
from gameday.faults.base import Fault, FaultContext
from gameday.rollback_log import RollbackLog
from gameday.scenario import FaultSpec
from infra.targets.base import CommandResult, NetworkFault, ServiceState, Target
from infra.topology import Service, Topology


class FakeTarget(Target):
    name = "fake"

    def __init__(self, topology: Topology, rollback_log_path: Path | None = None) -> None:
        super().__init__(topology)
        self.rollback_log_path = rollback_log_path
        self.calls: list[tuple] = []
        #: The rollback log's entries (as on disk) at the moment of each mutating call.
        self.rollback_log_at_call: list[list[dict]] = []
        self.stopped: set[tuple[str, str]] = set()
        self.paused: dict[tuple[str, str], list[int]] = {}
        self.network: list[NetworkFault] = []
        self.pids = {s.name: 1000 + i * 10 for i, s in enumerate(topology.services)}

    # The engine never deploys: a GameDay runs against a stack that is up.
    def deploy(self, progress, publish_monitoring=False):
        raise NotImplementedError("a GameDay never deploys")

    def status(self):
        raise NotImplementedError("a GameDay never asks for the stack's status table")

    def destroy(self, progress):
        raise NotImplementedError("a GameDay never destroys")

    # The ops commands' part of the interface: runbook steps run `python -m infra.ops`
    # in a process of their own, on the stack's real target, never on this one.
    def health(self, service):
        raise NotImplementedError("the engine never asks a service's ops health")

    def state_word(self, service):
        raise NotImplementedError("the engine never asks a service's ops state word")

    def logs(self, service, lines):
        raise NotImplementedError("the engine never reads a service's log")

    def restart(self, service):
        raise NotImplementedError("the engine never restarts a service through ops")

    def _mutating(self, *call: object) -> None:
        self.calls.append(call)
        entries = []
        if self.rollback_log_path is not None and self.rollback_log_path.exists():
            entries = json.loads(self.rollback_log_path.read_text())["entries"]
        self.rollback_log_at_call.append(entries)

    def state(self, service: Service) -> ServiceState:
        key = (service.host, service.name)
        running = key not in self.stopped
        return ServiceState(service.host, service.name, "RUNNING" if running else "STOPPED",
                            self.pids[service.name] if running else None,
                            tuple(self.paused.get(key, ())))

    def start(self, service: Service) -> None:
        self._mutating("start", service.host, service.name)
        self.stopped.discard((service.host, service.name))

    def stop(self, service: Service) -> None:
        self._mutating("stop", service.host, service.name)
        self.stopped.add((service.host, service.name))

    def processes(self, service: Service) -> list[int]:
        if (service.host, service.name) in self.stopped:
            return []
        base = self.pids[service.name]
        return [base, base + 1, base + 2]

    def pause(self, service: Service) -> list[int]:
        self._mutating("pause", service.host, service.name)
        pids = self.processes(service)
        self.paused[(service.host, service.name)] = pids
        return pids

    def resume(self, service: Service, pids: Sequence[int] = ()) -> list[int]:
        self._mutating("resume", service.host, service.name, tuple(pids))
        return self.paused.pop((service.host, service.name), list(pids))

    def signal_pids(self, pids: Sequence[int], sig: int) -> None:
        self._mutating("signal", tuple(pids), sig)

    def run(self, host: str, argv: Sequence[str], timeout_s: float, user: str | None = None,
            env: dict[str, str] | None = None) -> CommandResult:
        self.calls.append(("run", host, tuple(argv)))
        return CommandResult(tuple(argv), 0, "", "", 0.01)

    def apply_network_fault(self, fault: NetworkFault) -> None:
        self._mutating("nft_apply", fault)
        self.network.append(fault)

    def remove_network_faults(self) -> None:
        self._mutating("nft_delete")
        self.network = []

    def network_faults_active(self) -> bool:
        return bool(self.network)

    def user_of(self, service_name: str) -> str:
        return "nobody"


def make_fault(topology: Topology, kind: str, service: str, target: Target | None = None,
               duration: float = 10, **params: object) -> tuple[Fault, RollbackLog]:
    """A `kind` fault on `service` (run r1 of scenario t) with a fresh rollback log, on
    a FakeTarget unless told otherwise."""
    rollback_log = RollbackLog.create(topology.state_dir, "r1", topology.stack)
    spec = FaultSpec(kind=kind, target={"service": service}, parameters=params,
                     duration_s=duration)
    ctx = FaultContext(topology=topology, target=target or FakeTarget(topology),
                       rollback_log=rollback_log, scenario_id="t", run_id="r1")
    return fault_class(kind)(spec, ctx), rollback_log
