"""The stack config, validated into a typed topology: the one source of truth.

`infra/stacks/<name>.yaml` names the hosts, their loopback addresses, the services on
each, ports and sizing, and the monitoring intervals. Everything else (Ansible
inventory, Prometheus targets, Pulumi resources, GameDay targets) is derived from the
`Topology` returned by `load_stack`.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from infra.catalog import OPTIONAL_SINGLETONS, REQUIRED_SINGLETONS, SERVICE_KINDS, ServiceKind
from infra.yaml_source import ConfigError, YamlDocument, load_yaml, validate_document

STACKS_DIR = Path(__file__).resolve().parent / "stacks"
REPO_ROOT = STACKS_DIR.parent.parent
STATE_ROOT = Path("/var/lib/civicpulse")
LOOPBACK = ipaddress.ip_network("127.0.0.0/8")

Port = Annotated[int, Field(ge=1024, le=65535)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AppSizing(Strict):
    workers: int = Field(3, ge=1, le=32)
    worker_class: Literal["sync", "gthread"] = "sync"
    threads: int = Field(1, ge=1, le=64)
    timeout_s: int = Field(30, ge=1, le=600)


class PostgresqlSizing(Strict):
    max_connections: int = Field(100, ge=10, le=2000)
    shared_buffers_mb: int = Field(256, ge=16, le=65536)
    effective_cache_size_mb: int = Field(1024, ge=64, le=262144)
    work_mem_mb: int = Field(4, ge=1, le=4096)
    synchronous_commit: Literal["on", "off", "local", "remote_write"] = "on"
    #: Default for the app's role: behind PgBouncer (transaction pooling) a session SET
    #: would leak between clients, so the timeout lives on the role itself.
    statement_timeout_ms: int = Field(5000, ge=100, le=3600000)
    database: str = Field("civicpulse", pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    #: Size-limited volume for the data directory (on the local target a loop-mounted
    #: ext4 image), so that a full disk is the database's own and can be rehearsed.
    #: None: a plain directory on the machine's filesystem.
    data_volume_mb: int | None = Field(None, ge=256, le=1048576)


class PgbouncerSizing(Strict):
    default_pool_size: int = Field(20, ge=1, le=1000)
    reserve_pool_size: int = Field(5, ge=0, le=1000)
    max_client_conn: int = Field(1000, ge=10, le=100000)
    max_db_connections: int = Field(60, ge=1, le=10000)
    query_timeout_s: int = Field(10, ge=0, le=3600)
    query_wait_timeout_s: int = Field(15, ge=1, le=3600)
    server_connect_timeout_s: int = Field(3, ge=1, le=60)


class RedisSizing(Strict):
    maxmemory_mb: int = Field(128, ge=8, le=65536)
    maxmemory_policy: Literal[
        "allkeys-lru", "allkeys-lfu", "volatile-lru", "volatile-lfu", "allkeys-random",
        "volatile-random", "volatile-ttl", "noeviction",
    ] = "allkeys-lru"
    maxclients: int = Field(1000, ge=16, le=100000)


class NginxSizing(Strict):
    worker_processes: int = Field(2, ge=1, le=64)
    client_max_body_size_kb: int = Field(64, ge=1, le=1048576)
    rate_limit_rps: int = Field(2000, ge=1, le=1000000)
    rate_limit_burst: int = Field(4000, ge=0, le=1000000)
    max_fails: int = Field(2, ge=1, le=100)
    fail_timeout_s: int = Field(5, ge=1, le=3600)
    upstream_keepalive: int = Field(32, ge=0, le=10000)
    proxy_timeout_s: int = Field(15, ge=1, le=600)


class PrometheusSizing(Strict):
    retention: str = Field("2d", pattern=r"^[0-9]+[smhdwy]$")


class PgbackrestSizing(Strict):
    """The backup repository (pgBackRest): its volume, WAL archiving, schedule, retention."""

    #: Size-limited volume for the repository (a loop-mounted ext4 image on the local
    #: target), so that a repository filling up is its own and is alerted on. None: a
    #: plain directory.
    repo_volume_mb: int | None = Field(None, ge=256, le=1048576)
    #: PostgreSQL's archive_timeout: the longest a written WAL segment waits before it
    #: is switched and archived, i.e. the recovery point objective under low traffic.
    archive_timeout_s: int = Field(60, ge=1, le=3600)
    #: pgBackRest's archive-timeout: how long archive_command waits for the queued
    #: segment to reach the repository before it reports a failure to PostgreSQL
    #: (which retries). It is how soon an unreachable repository shows as failed
    #: archiving (pg_stat_archiver, PostgresqlWalArchivingFailing).
    archive_push_timeout_s: int = Field(60, ge=1, le=3600)
    #: The schedule the backup host keeps: a full backup every `full_every_h` hours,
    #: a differential every `diff_every_h`, an incremental every `incr_every_min`.
    full_every_h: int = Field(168, ge=1, le=8760)
    diff_every_h: int = Field(24, ge=1, le=8760)
    incr_every_min: int = Field(60, ge=1, le=525600)
    #: Full backups kept (older ones expire with their differentials and WAL).
    retention_full: int = Field(2, ge=1, le=100)
    #: Differential backups kept per full backup.
    retention_diff: int = Field(6, ge=1, le=100)
    process_max: int = Field(1, ge=1, le=32)
    compress_type: Literal["lz4", "zst", "gz", "none"] = "lz4"

    @field_validator("diff_every_h")
    @classmethod
    def _diff_within_full(cls, value: int, info: ValidationInfo) -> int:
        full = info.data.get("full_every_h")
        if full is not None and value > full:
            raise ValueError(f"{value} h is longer than full_every_h ({full} h): a "
                             "differential backup is taken between full ones")
        return value


class Sizing(Strict):
    app: AppSizing = AppSizing()
    postgresql: PostgresqlSizing = PostgresqlSizing()
    pgbouncer: PgbouncerSizing = PgbouncerSizing()
    redis: RedisSizing = RedisSizing()
    nginx: NginxSizing = NginxSizing()
    prometheus: PrometheusSizing = PrometheusSizing()
    pgbackrest: PgbackrestSizing = PgbackrestSizing()


class AlertmanagerTimings(Strict):
    group_wait_s: int = Field(0, ge=0, le=3600)
    group_interval_s: int = Field(1, ge=1, le=86400)
    repeat_interval_s: int = Field(3600, ge=1, le=604800)


class Monitoring(Strict):
    profile: Literal["lab", "prod"] = "lab"
    scrape_interval_s: int = Field(1, ge=1, le=300)
    evaluation_interval_s: int = Field(1, ge=1, le=300)
    #: How long a condition must hold before an alert fires; short in the lab so that
    #: GameDays measure detection in seconds.
    alert_for_s: int = Field(2, ge=0, le=3600)
    slo_availability: float = Field(0.999, gt=0.9, lt=1.0)
    p99_latency_s: float = Field(1.0, gt=0, le=60)
    error_ratio: float = Field(0.05, gt=0, lt=1)
    alertmanager: AlertmanagerTimings = AlertmanagerTimings()
    #: Alertmanager's webhook receiver, on the alertmanager host: the notification log
    #: (local target) or the GameDay engine (Docker target).
    webhook_port: Port = 9099


class Workload(Strict):
    """The WSGI application the app hosts run: the reference app unless overridden."""

    #: Directory (relative to the checkout) with the WSGI package and either a
    #: requirements.txt or a pyproject.toml listing its dependencies.
    source: str = "app"
    wsgi: str = Field("civicpulse.wsgi:application", pattern=r"^[\w.]+:[\w.]+$")
    #: Django settings module, if the workload is a Django project (migrations run at deploy).
    django_settings: str | None = "civicpulse.settings"
    #: Gunicorn config module shipped with the workload (bind, workers and timeouts are
    #: always passed on the command line from the stack's sizing, whatever it says).
    gunicorn_config: str | None = "python:civicpulse.gunicorn_conf"
    health_path: str = Field("/civicpulse/health/", pattern=r"^/")
    #: Also serve the chaos report's read-then-write create at
    #: /api/report-pattern/users/: the benchmark's second write pattern, not an API
    #: (reference app only; off unless a stack is benchmarked).
    report_pattern: bool = False


class DockerSettings(Strict):
    """How the docker target builds and connects the stack's containers."""

    #: The Debian bookworm image every service image is built from. Users pull it as
    #: usual; where no registry is reachable the tests make one with debootstrap.
    base_image: str = Field("debian:bookworm-slim",
                            pattern=r"^[a-z0-9][a-z0-9._/:@-]{0,200}$")
    #: The stack's internal Docker network. Each host's address in it keeps the host's
    #: offset within the stack's loopback block (127.0.10.21 -> x.y.z.21). Default: the
    #: loopback block mapped into 172.16.0.0/12 (infra.docker.layout).
    subnet: str | None = None

    @field_validator("subnet")
    @classmethod
    def _private(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            net = ipaddress.ip_network(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a network such as 172.16.10.0/24") from None
        if not isinstance(net, ipaddress.IPv4Network) or not net.is_private \
                or net.prefixlen > 28 or net.overlaps(LOOPBACK):
            raise ValueError(f"{value} must be a private IPv4 network (RFC 1918) of at "
                             "least /28, outside 127.0.0.0/8")
        return str(net)


class ServiceEntry(Strict):
    name: str
    port: Port | None = None
    #: Only for services with a metrics port of their own (see infra/catalog.py).
    metrics_port: Port | None = None


class HostEntry(Strict):
    address: str
    services: list[str | ServiceEntry] = Field(min_length=1)
    #: How Ansible reaches the host: this machine (`local`) or sshd.
    connection: Literal["local", "ssh"] = "local"
    ssh_host: str | None = None
    ssh_port: int = Field(22, ge=1, le=65535)
    ssh_user: str = "root"
    ssh_private_key: str | None = None
    #: known_hosts file holding the host's key; checked strictly when given.
    ssh_known_hosts: str | None = None

    @field_validator("address")
    @classmethod
    def _loopback(cls, value: str) -> str:
        try:
            addr = ipaddress.ip_address(value)
        except ValueError:
            raise ValueError(f"{value!r} is not an IP address") from None
        if addr not in LOOPBACK:
            raise ValueError(f"{value} is outside 127.0.0.0/8: every host of a stack on "
                             "this machine is a loopback address")
        return value


class StackFile(Strict):
    stack: str = Field(pattern=r"^[a-z][a-z0-9-]{0,30}$")
    target: Literal["local", "docker"] = "local"
    state_dir: str | None = None
    hosts: dict[Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{0,30}$")], HostEntry] = Field(
        min_length=1
    )
    sizing: Sizing = Sizing()
    monitoring: Monitoring = Monitoring()
    workload: Workload = Workload()
    docker: DockerSettings = DockerSettings()


@dataclass(frozen=True)
class Service:
    kind: ServiceKind
    host: str
    address: str
    port: int
    #: Where Prometheus scrapes it: `port` unless the service has a metrics port.
    metrics_port: int = 0

    def __post_init__(self) -> None:
        if not self.metrics_port:
            object.__setattr__(self, "metrics_port", self.port)

    @property
    def name(self) -> str:
        return self.kind.name

    @property
    def metrics_endpoint(self) -> str:
        return f"{self.address}:{self.metrics_port}"

    @property
    def endpoint(self) -> str:
        return f"{self.address}:{self.port}"


@dataclass(frozen=True)
class Host:
    name: str
    address: str
    services: tuple[Service, ...]
    connection: str
    ssh_host: str | None
    ssh_port: int
    ssh_user: str
    ssh_private_key: str | None = None
    ssh_known_hosts: str | None = None

    def runs(self, service: str) -> bool:
        return any(s.name == service for s in self.services)


@dataclass(frozen=True)
class Topology:
    stack: str
    target: str
    source: Path
    state_dir: Path
    hosts: tuple[Host, ...]
    sizing: Sizing
    monitoring: Monitoring
    workload: Workload
    docker: DockerSettings = DockerSettings()

    @property
    def services(self) -> tuple[Service, ...]:
        return tuple(s for h in self.hosts for s in h.services)

    def host(self, name: str) -> Host:
        for host in self.hosts:
            if host.name == name:
                return host
        raise KeyError(f"stack {self.stack!r} has no host {name!r}")

    def instances(self, service: str) -> tuple[Service, ...]:
        return tuple(s for s in self.services if s.name == service)

    def one(self, service: str) -> Service:
        found = self.instances(service)
        if len(found) != 1:
            raise KeyError(f"stack {self.stack!r} runs {len(found)} {service} instances, not 1")
        return found[0]

    @property
    def has_backups(self) -> bool:
        """Whether the stack runs a pgBackRest repository (and archives WAL to it)."""
        return bool(self.instances("pgbackrest"))

    def url(self, service: str, path: str = "/") -> str:
        return f"http://{self.one(service).endpoint}{path}"

    @property
    def app_url(self) -> str:
        return self.url("nginx")

    @property
    def webhook_address(self) -> tuple[str, int]:
        return self.one("alertmanager").address, self.monitoring.webhook_port

    @property
    def webhook_endpoint(self) -> str:
        return "{}:{}".format(*self.webhook_address)


def stack_path(name: str) -> Path:
    return STACKS_DIR / f"{name}.yaml"


def load_stack(name_or_path: str | Path) -> Topology:
    """Read and validate a stack config; raise ConfigError listing every problem."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = stack_path(str(name_or_path))
        if not path.is_file():
            known = ", ".join(sorted(p.stem for p in STACKS_DIR.glob("*.yaml"))) or "none"
            raise ConfigError([f"{path}: no stack named {name_or_path!r} (known stacks: {known})"])
    doc = load_yaml(path)
    return parse_stack(doc)


def parse_stack(doc: YamlDocument) -> Topology:
    raw = validate_document(doc, StackFile,
                            "the stack config must be a mapping with 'stack' and 'hosts'")
    problems: list[str] = []
    hosts = []
    seen_addresses: dict[str, str] = {}
    listeners: dict[tuple[str, int], str] = {}
    for host_name, entry in raw.hosts.items():
        if entry.address in seen_addresses:
            problems.append(f"{doc.where(['hosts', host_name, 'address'])}: address "
                            f"{entry.address} is already host {seen_addresses[entry.address]!r}")
        seen_addresses.setdefault(entry.address, host_name)
        if entry.connection == "ssh" and not entry.ssh_host:
            problems.append(f"{doc.where(['hosts', host_name, 'ssh_host'])}: connection ssh "
                            "needs ssh_host")
        services = []
        for i, item in enumerate(entry.services):
            loc = ["hosts", host_name, "services", i]
            svc = item if isinstance(item, ServiceEntry) else ServiceEntry(name=item)
            kind = SERVICE_KINDS.get(svc.name)
            if kind is None:
                problems.append(f"{doc.where(loc)}: unknown service {svc.name!r} (known: "
                                f"{', '.join(sorted(SERVICE_KINDS))})")
                continue
            if any(s.name == svc.name for s in services):
                problems.append(f"{doc.where(loc)}: {svc.name} listed twice on this host")
                continue
            port = svc.port or kind.port
            if svc.metrics_port is not None and kind.metrics_port is None:
                problems.append(f"{doc.where([*loc, 'metrics_port'])}: {svc.name} has no metrics "
                                "port of its own; metrics_port does not apply")
            metrics_port = (svc.metrics_port or kind.metrics_port or port)
            for field_name, wanted in (("port", port), ("metrics_port", metrics_port)):
                if field_name == "metrics_port" and wanted == port:
                    continue
                key = (entry.address, wanted)
                if key in listeners:
                    problems.append(f"{doc.where(loc)}: {svc.name} wants {entry.address}:"
                                    f"{wanted} ({field_name}), which {listeners[key]} already "
                                    "uses; give one of them another port")
                listeners.setdefault(key, f"{host_name}/{svc.name}")
            services.append(Service(kind=kind, host=host_name, address=entry.address, port=port,
                                    metrics_port=metrics_port))
        hosts.append(Host(name=host_name, address=entry.address, services=tuple(services),
                          connection=entry.connection, ssh_host=entry.ssh_host,
                          ssh_port=entry.ssh_port, ssh_user=entry.ssh_user,
                          ssh_private_key=entry.ssh_private_key,
                          ssh_known_hosts=entry.ssh_known_hosts))
    webhook = (_alertmanager_address(hosts), raw.monitoring.webhook_port)
    if webhook[0] and webhook in listeners:
        problems.append(f"{doc.where(['monitoring', 'webhook_port'])}: {webhook[0]}:{webhook[1]} "
                        f"is already used by {listeners[webhook]}")
    all_services = [s for h in hosts for s in h.services]
    for required in (*REQUIRED_SINGLETONS, "app"):
        count = sum(1 for s in all_services if s.name == required)
        if count == 0:
            problems.append(f"{doc.where(['hosts'])}: no host runs {required}; add it to one "
                            "host's services")
        elif count > 1 and required != "app":
            problems.append(f"{doc.where(['hosts'])}: {required} runs on {count} hosts; a stack "
                            "has exactly one")
    for optional in OPTIONAL_SINGLETONS:
        count = sum(1 for s in all_services if s.name == optional)
        if count > 1:
            problems.append(f"{doc.where(['hosts'])}: {optional} runs on {count} hosts; a "
                            "stack has at most one")
    problems.extend(_backup_placement(doc, hosts))
    for kind in SERVICE_KINDS.values():
        if kind.exports is None:
            continue
        count = sum(1 for s in all_services if s.name == kind.name)
        if count > 1:
            problems.append(f"{doc.where(['hosts'])}: {kind.name} runs on {count} hosts; "
                            "one is enough")
    if problems:
        raise ConfigError(problems)
    state_dir = Path(raw.state_dir) if raw.state_dir else STATE_ROOT / raw.stack
    if not state_dir.is_absolute():
        raise ConfigError([f"{doc.where(['state_dir'])}: must be an absolute path"])
    return Topology(stack=raw.stack, target=raw.target, source=doc.path, state_dir=state_dir,
                    hosts=tuple(hosts), sizing=raw.sizing, monitoring=raw.monitoring,
                    workload=raw.workload, docker=raw.docker)


def _backup_placement(doc: YamlDocument, hosts: list[Host]) -> list[str]:
    """pgBackRest's two halves: the repository on a host apart from the database (a
    backup that dies with the database's host is no backup), and its TLS server on
    the database's host, through which the repository reads the cluster."""
    repo = next((h for h in hosts if h.runs("pgbackrest")), None)
    agent = next((h for h in hosts if h.runs("pgbackrest_pg")), None)
    database = next((h for h in hosts if h.runs("postgresql")), None)
    problems = []
    if repo is not None and repo is database:
        problems.append(f"{doc.where(['hosts', repo.name, 'services'])}: pgbackrest shares "
                        f"host {repo.name!r} with postgresql; the backup repository needs a "
                        "host of its own")
    if repo is not None and agent is None and database is not None:
        problems.append(f"{doc.where(['hosts', database.name, 'services'])}: pgbackrest "
                        f"(host {repo.name!r}) reads the cluster through pgbackrest_pg on "
                        f"the postgresql host; add pgbackrest_pg to {database.name!r}")
    if agent is not None and agent is not database:
        problems.append(f"{doc.where(['hosts', agent.name, 'services'])}: pgbackrest_pg "
                        "runs on the postgresql host"
                        + (f" ({database.name!r})" if database else ""))
    if agent is not None and repo is None:
        problems.append(f"{doc.where(['hosts', agent.name, 'services'])}: pgbackrest_pg "
                        "without a pgbackrest repository host; add a host running pgbackrest")
    return problems


def _alertmanager_address(hosts: list[Host]) -> str | None:
    for host in hosts:
        if host.runs("alertmanager"):
            return host.address
    return None
