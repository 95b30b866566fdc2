"""Scenario files: the schema, loading with file:line:field errors, topology checks.

A scenario is data (Chaos Toolkit's experiment model) plus what that model lacks:
alert deadlines, the runbook to execute, a recovery deadline and lost-write checks.
Every file of the catalog is validated before anything runs; one bad file stops the
whole GameDay with errors that name file, line and field.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from gameday.fault_parameters import INSTANTANEOUS, PARAMETERS, FaultKindName, Params
from infra.catalog import OPTIONAL_SINGLETONS, SERVICE_KINDS
from infra.topology import REPO_ROOT, Topology
from infra.yaml_source import ConfigError, YamlDocument, load_yaml, validate_document

SCENARIOS_DIR = Path(__file__).resolve().parent / "scenarios"
RUNBOOK_STEPS = ("diagnose", "mitigate", "verify")
#: Alerts the engine raises itself rather than reading from Prometheus.
ENGINE_ALERTS = {"deadman": "WatchdogMissing"}


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Seconds = Annotated[float, Field(ge=0, le=3600)]


class HttpProbe(Strict):
    #: The service whose address:port the request goes to (nginx: through the edge).
    service: str = "nginx"
    path: str = Field(pattern=r"^/")
    method: Literal["GET", "HEAD"] = "GET"
    timeout_s: float = Field(2, gt=0, le=60)


class PromqlProbe(Strict):
    query: str = Field(min_length=1)
    timeout_s: float = Field(2, gt=0, le=60)


class CommandProbe(Strict):
    argv: list[str] = Field(min_length=1)
    #: Host to run on; default: the first host of the stack (all share this machine).
    host: str | None = None
    timeout_s: float = Field(5, gt=0, le=300)


class Tolerance(Strict):
    """What a probe's result must satisfy; which keys apply depends on the probe kind."""

    status: list[int] | None = None  # http
    max_latency_ms: float | None = Field(None, gt=0)  # http, command
    #: http: a top-level field of the JSON body and the values it may take.
    json_field: str | None = None
    json_in: list[str | int | float | bool] | None = None
    min: float | None = None  # promql
    max: float | None = None  # promql
    #: promql: what an empty result means. `zero` for `sum(...)`-style queries.
    if_empty: Literal["fail", "zero"] = "fail"
    exit_code: int | None = None  # command


class Probe(Strict):
    name: str = Field(min_length=1)
    http: HttpProbe | None = None
    promql: PromqlProbe | None = None
    command: CommandProbe | None = None
    tolerance: Tolerance

    @property
    def kind(self) -> str:
        return next(k for k in ("http", "promql", "command") if getattr(self, k) is not None)


class LoadSli(Strict):
    """The steady state as the load generator's users see it (sliding window)."""

    max_error_rate: float = Field(0.01, ge=0, le=1)
    max_p99_latency_ms: float = Field(1000, gt=0)
    window_s: float = Field(5, gt=0, le=600)
    #: Fewer completed requests than this in the window: judged by stalls only.
    min_requests: int = Field(5, ge=1)


class SteadyState(Strict):
    #: Before injecting: how long the stack may take to satisfy every probe.
    settle_s: Seconds = 30
    #: How many consecutive passing checks count as steady before injecting.
    confirm_checks: int = Field(3, ge=1, le=100)
    interval_s: float = Field(1, gt=0, le=60)
    probes: list[Probe] = Field(min_length=1)
    load: LoadSli = LoadSli()


class RequestMix(Strict):
    """Relative weights of the requests each virtual user sends."""

    create_user: int = Field(60, ge=0)
    get_user: int = Field(30, ge=0)
    list_audit: int = Field(5, ge=0)
    health: int = Field(5, ge=0)


class Load(Strict):
    users: int = Field(20, ge=1, le=2000)
    #: Healthy traffic before the fault ("before" phase).
    before_s: Seconds = 10
    #: Traffic kept up after steady state is regained ("after" phase).
    after_s: Seconds = 10
    #: Hard bound on the whole scenario, whatever else happens.
    max_duration_s: float = Field(300, gt=0, le=3600)
    think_time_ms: float = Field(20, ge=0, le=60000)
    timeout_s: float = Field(5, gt=0, le=120)
    max_requests: int = Field(500_000, ge=1)
    mix: RequestMix = RequestMix()


class FaultTarget(Strict):
    service: str
    #: Which instance, for services that run on several hosts.
    host: str | None = None
    #: Every instance of the service at once (e.g. all app hosts).
    all_instances: bool = False


class FaultSpec(Strict):
    kind: FaultKindName
    target: FaultTarget
    parameters: dict[str, Any] = Field(default_factory=dict)
    #: How long the fault is held; 0 for instantaneous kinds (process_crash).
    duration_s: Seconds = 0

    @property
    def params(self) -> Params:
        return PARAMETERS[self.kind].model_validate(self.parameters)


class ExpectedAlert(Strict):
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    #: Seconds from fault injection to the alert firing.
    deadline_s: float = Field(gt=0, le=3600)
    #: Seconds from steady state regained to the alert resolving.
    resolve_deadline_s: float = Field(120, gt=0, le=7200)
    #: prometheus: a rule of ours (seen via Alertmanager's webhook and Prometheus'
    #: /api/v1/alerts). deadman: raised by the engine when the Watchdog heartbeat
    #: stops (a dead man's switch, for when Prometheus itself is down).
    source: Literal["prometheus", "deadman"] = "prometheus"
    required: bool = True


class Runbook(Strict):
    #: Repository-relative; default `runbooks/<first expected alert>.md`.
    path: str | None = None
    trigger: Literal["on_alert", "on_fault"] = "on_alert"
    steps: list[Literal["diagnose", "mitigate", "verify"]] = Field(
        default_factory=lambda: list(RUNBOOK_STEPS), min_length=1)
    step_timeout_s: float = Field(60, gt=0, le=3600)
    #: A missing runbook falsifies the hypothesis only when required (until the
    #: runbooks land, missing ones are reported, not fatal).
    required: bool = False


class Recovery(Strict):
    #: Seconds from the end of the fault to steady state regained.
    deadline_s: float = Field(gt=0, le=3600)
    #: Steady state must hold this long to count as regained.
    stable_s: float = Field(5, ge=0, le=600)


class DataChecks(Strict):
    max_lost_acknowledged_writes: int = Field(0, ge=0)
    #: A fault that loses data: acknowledged writes may be lost only if they were
    #: acknowledged at most this many seconds before the fault (a lost volume: the
    #: archive window, archive_timeout + 2 s; a point-in-time restore to before the
    #: fault: ~0, only writes after it); None: no window is claimed.
    lost_writes_within_s: float | None = Field(None, gt=0, le=3600)
    max_audit_mismatches: int = Field(0, ge=0)
    #: Writes that failed or timed out for the client but are in the database.
    #: Reported always; a limit only if the scenario states one.
    max_landed_despite_failure: int | None = Field(None, ge=0)
    #: Graceful degradation: the users' success rate while the fault is active.
    min_success_rate_during: float | None = Field(None, ge=0, le=1)


class StopConditions(Strict):
    """Blast radius: abort and roll back if users suffer more than this."""

    max_error_rate: float = Field(0.9, ge=0, le=1)
    window_s: float = Field(5, gt=0, le=600)
    #: The error rate must exceed the limit this long before the run aborts.
    for_s: float = Field(30, ge=0, le=3600)


class Scenario(Strict):
    id: str = Field(pattern=r"^[a-z][a-z0-9-]{1,62}$")
    title: str = Field(min_length=1)
    hypothesis: str = Field(min_length=1)
    tags: list[str] = Field(default_factory=list)
    steady_state: SteadyState
    load: Load = Load()
    fault: FaultSpec
    alerts: list[ExpectedAlert] = Field(default_factory=list)
    runbook: Runbook | None = None
    recovery: Recovery
    data_checks: DataChecks = DataChecks()
    stop_conditions: StopConditions = StopConditions()

    _doc: YamlDocument | None = PrivateAttr(default=None)

    @property
    def source(self) -> Path | None:
        return self._doc.path if self._doc else None

    def where(self, loc: Sequence[str | int]) -> str:
        """`file:line: field` for messages about this scenario."""
        if self._doc is None:
            return f"scenario {self.id}: {'.'.join(map(str, loc))}"
        return self._doc.where(loc)

    @property
    def runbook_path(self) -> Path | None:
        if self.runbook is None:
            return None
        if self.runbook.path:
            return REPO_ROOT / self.runbook.path
        if not self.alerts:
            return None
        return REPO_ROOT / "runbooks" / f"{self.alerts[0].name}.md"


@dataclass(frozen=True)
class ScenarioSummary:
    id: str
    title: str
    fault: str
    target: str
    duration_s: float
    alerts: tuple[str, ...]
    source: str


def summarize(scenario: Scenario) -> ScenarioSummary:
    t = scenario.fault.target
    where = "all instances" if t.all_instances else (t.host or "")
    return ScenarioSummary(
        id=scenario.id, title=scenario.title, fault=scenario.fault.kind,
        target=f"{t.service}@{where}" if where else t.service,
        duration_s=scenario.fault.duration_s,
        alerts=tuple(a.name for a in scenario.alerts), source=str(scenario.source or ""))


def parse_scenario(doc: YamlDocument) -> Scenario:
    """Validate one loaded document; raise ConfigError with every problem found."""
    scenario = validate_document(doc, Scenario, "a scenario must be a mapping with id, "
                                 "title, hypothesis, steady_state, fault and recovery")
    scenario._doc = doc
    problems = _schema_problems(scenario, doc)
    if problems:
        raise ConfigError(problems)
    return scenario


def load_scenario(path: Path) -> Scenario:
    return parse_scenario(load_yaml(path))


def load_catalog(directory: Path | None = None) -> dict[str, Scenario]:
    """Every `*.yaml` of the catalog, all valid or a ConfigError listing all problems."""
    directory = directory or SCENARIOS_DIR
    files = sorted(directory.glob("*.yaml"))
    if not files:
        raise ConfigError([f"{directory}: no scenario files (*.yaml)"])
    problems: list[str] = []
    catalog: dict[str, Scenario] = {}
    for path in files:
        try:
            scenario = load_scenario(path)
        except ConfigError as exc:
            problems.extend(exc.problems)
            continue
        if scenario.id in catalog:
            problems.append(f"{scenario.where(['id'])}: id {scenario.id!r} is already used by "
                            f"{catalog[scenario.id].source}")
            continue
        catalog[scenario.id] = scenario
    if problems:
        raise ConfigError(problems)
    return catalog


def select(catalog: dict[str, Scenario], ids: Sequence[str] | None) -> list[Scenario]:
    if not ids:
        return list(catalog.values())
    unknown = [i for i in ids if i not in catalog]
    if unknown:
        raise ConfigError([f"unknown scenario {i!r} (known: {', '.join(sorted(catalog))})"
                           for i in unknown])
    return [catalog[i] for i in ids]


def _schema_problems(s: Scenario, doc: YamlDocument) -> list[str]:
    """Rules pydantic's field types cannot express, each pinned to its line."""
    problems: list[str] = []
    if doc.path.suffix in (".yaml", ".yml") and doc.path.stem != s.id:
        problems.append(f"{doc.where(['id'])}: id {s.id!r} must match the file name "
                        f"({doc.path.stem}.yaml) so that a scenario is easy to find")
    for i, probe in enumerate(s.steady_state.probes):
        problems += _probe_problems(probe, doc, ["steady_state", "probes", i])
    fault = s.fault
    try:
        PARAMETERS[fault.kind].model_validate(fault.parameters)
    except ValidationError as exc:
        for err in exc.errors():
            loc = ["fault", "parameters", *err["loc"]]
            msg = "unknown parameter for fault kind " + fault.kind if (
                err["type"] == "extra_forbidden") else err["msg"]
            problems.append(f"{doc.where(loc)}: {msg}")
    if fault.kind in INSTANTANEOUS and fault.duration_s:
        problems.append(f"{doc.where(['fault', 'duration_s'])}: {fault.kind} is instantaneous; "
                        "leave duration_s at 0")
    if fault.kind not in INSTANTANEOUS and fault.duration_s <= 0:
        problems.append(f"{doc.where(['fault', 'duration_s'])}: {fault.kind} is held for a "
                        "time; give duration_s > 0")
    if fault.target.service not in SERVICE_KINDS and fault.kind != "load_surge":
        problems.append(f"{doc.where(['fault', 'target', 'service'])}: unknown service "
                        f"{fault.target.service!r} (known: {', '.join(sorted(SERVICE_KINDS))})")
    if fault.target.host and fault.target.all_instances:
        problems.append(f"{doc.where(['fault', 'target', 'all_instances'])}: give either host "
                        "or all_instances, not both")
    for i, alert in enumerate(s.alerts):
        if alert.source == "deadman" and alert.name != ENGINE_ALERTS["deadman"]:
            problems.append(f"{doc.where(['alerts', i, 'name'])}: the dead man's switch raises "
                            f"{ENGINE_ALERTS['deadman']}, not {alert.name}")
    if s.runbook is not None and s.runbook.path is None and not s.alerts:
        problems.append(f"{doc.where(['runbook'])}: no alerts to name the runbook after; "
                        "give runbook.path")
    if s.runbook is not None and s.runbook.trigger == "on_alert" and not s.alerts:
        problems.append(f"{doc.where(['runbook', 'trigger'])}: on_alert needs an expected alert")
    mix = s.load.mix
    if mix.create_user + mix.get_user + mix.list_audit + mix.health == 0:
        problems.append(f"{doc.where(['load', 'mix'])}: every weight is 0; nothing to send")
    return problems


_TOLERANCE_KEYS = {
    "http": {"status", "max_latency_ms", "json_field", "json_in"},
    "promql": {"min", "max", "if_empty"},
    "command": {"exit_code", "max_latency_ms"},
}


def _probe_problems(probe: Probe, doc: YamlDocument, loc: list[str | int]) -> list[str]:
    kinds = [k for k in ("http", "promql", "command") if getattr(probe, k) is not None]
    if len(kinds) != 1:
        return [f"{doc.where(loc)}: a probe needs exactly one of http, promql, command "
                f"(found {', '.join(kinds) or 'none'})"]
    kind = kinds[0]
    problems = []
    given = {k for k in probe.tolerance.model_fields_set}
    for key in sorted(given - _TOLERANCE_KEYS[kind]):
        problems.append(f"{doc.where([*loc, 'tolerance', key])}: does not apply to a {kind} "
                        f"probe (use: {', '.join(sorted(_TOLERANCE_KEYS[kind]))})")
    if not given & (_TOLERANCE_KEYS[kind] - {"if_empty"}):
        problems.append(f"{doc.where([*loc, 'tolerance'])}: states nothing to check for a "
                        f"{kind} probe (use: {', '.join(sorted(_TOLERANCE_KEYS[kind]))})")
    tol = probe.tolerance
    if (tol.json_field is None) != (tol.json_in is None):
        problems.append(f"{doc.where([*loc, 'tolerance'])}: json_field and json_in go together")
    if kind == "http" and probe.http and probe.http.service not in SERVICE_KINDS:
        problems.append(f"{doc.where([*loc, 'http', 'service'])}: unknown service "
                        f"{probe.http.service!r}")
    return problems


def absent_optional_services(scenario: Scenario, topology: Topology) -> list[str]:
    """Optional services (the backup repository and its agents) the scenario's fault
    acts on and the stack chose not to run: the scenario is skipped, not refused."""
    params = scenario.fault.params
    wanted = [scenario.fault.target.service, *(getattr(params, "from_services", []) or [])]
    return [name for name in dict.fromkeys(wanted)
            if name in OPTIONAL_SINGLETONS and not topology.instances(name)]


def check_against_topology(scenario: Scenario, topology: Topology) -> list[str]:
    """Problems that only show against a stack: services, hosts and instances."""
    problems: list[str] = []
    w = scenario.where
    target = scenario.fault.target
    if scenario.fault.kind != "load_surge":
        instances = topology.instances(target.service)
        if not instances:
            problems.append(f"{w(['fault', 'target', 'service'])}: stack {topology.stack!r} "
                            f"runs no {target.service}")
        elif target.host and not any(s.host == target.host for s in instances):
            hosts = ", ".join(s.host for s in instances)
            problems.append(f"{w(['fault', 'target', 'host'])}: {target.service} does not run "
                            f"on {target.host!r} (it runs on {hosts})")
        elif len(instances) > 1 and not target.host and not target.all_instances:
            hosts = ", ".join(s.host for s in instances)
            problems.append(f"{w(['fault', 'target'])}: {target.service} runs on {hosts}; "
                            "say which with host, or all_instances: true")
    params = scenario.fault.params
    for i, name in enumerate(getattr(params, "from_services", []) or []):
        if not topology.instances(name):
            problems.append(f"{w(['fault', 'parameters', 'from_services', i])}: stack "
                            f"{topology.stack!r} runs no {name}")
    for i, probe in enumerate(scenario.steady_state.probes):
        loc: list[str | int] = ["steady_state", "probes", i]
        if probe.http and not topology.instances(probe.http.service):
            problems.append(f"{w([*loc, 'http', 'service'])}: stack runs no "
                            f"{probe.http.service}")
        if probe.command and probe.command.host:
            if probe.command.host not in {h.name for h in topology.hosts}:
                problems.append(f"{w([*loc, 'command', 'host'])}: no host "
                                f"{probe.command.host!r} in stack {topology.stack!r}")
    return problems
