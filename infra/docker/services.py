"""What each service needs as a container: image, program, files, health check, limits.

Pure data, no Pulumi: `plan(topology)` returns one `ContainerSpec` (`infra.docker.specs`)
per service per host (plus the notification log next to Alertmanager, and Grafana on
the Prometheus host), and `infra.docker.program` turns the specs into resources.

The images carry the local target's Debian packages (`infra.docker.images`), so a
container runs exactly the role's supervised program (`infra.docker.programs`: command
line, user, directory, environment, stop signal) with the role's config files
(`infra.docker.container_files`), paths and all; what is Docker's own is here: the
health checks, memory and CPU limits, volumes and start order. The few files no
template covers (PostgreSQL's first start, redis_exporter's password map) say which
role task they stand in for.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from infra.docker.container_files import (
    dashboard_provider_path,
    initdb_sql,
    pg_hba_for_docker,
    postgresql_includes,
    role_files,
    secret_file,
    static_file,
)
from infra.docker.images import image_name, image_plan
from infra.docker.layout import DockerLayout, layout_for
from infra.docker.programs import Program, role_of, supervised_program
from infra.docker.render import MONITORING_DIR, DockerContext, repo_relative
from infra.docker.specs import (
    ContainerSpec,
    FileSpec,
    Healthcheck,
    HostPlan,
    PublishedPort,
    StackPlan,
)
from infra.secrets import SECRET_NAMES
from infra.topology import REPO_ROOT, Service, Topology
from infra.yaml_source import ConfigError

POSTGRESQL_FIRST_START = Path(__file__).resolve().parent / "files" / "postgresql-first-start.sh"
NOTIFICATION_LOG = REPO_ROOT / "monitoring" / "alertmanager" / "notification_log.py"
#: Grafana is not a service of the stack config (the local target has none) and has no
#: Debian package: the docker target adds its upstream image next to Prometheus, pinned
#: to the version the dashboards are generated for (monitoring/dashboards.py).
GRAFANA_IMAGE = "grafana/grafana:11.6.0"
GRAFANA_PORT = 3000
GRAFANA_UID = "472"  # the upstream image's grafana user
PROMETHEUS_DIR = MONITORING_DIR / "prometheus"
ALERTMANAGER_DIR = MONITORING_DIR / "alertmanager"
GRAFANA_DIR = MONITORING_DIR / "grafana"
#: Where the JSON dashboards of monitoring/grafana go when its dashboard provider
#: names no path (outside the data volume, so a removed dashboard does not linger).
GRAFANA_DASHBOARDS_DIR = "/etc/grafana/dashboards"
#: Secrets only the docker target has (Grafana's admin login).
DOCKER_SECRET_NAMES = ("grafana_admin",)
ALL_SECRET_NAMES = (*SECRET_NAMES, *DOCKER_SECRET_NAMES)
#: Services whose port is published on the Docker host, always / with publish_monitoring.
#: The always-published ones are reached from outside only: their endpoint address in
#: the templates stays the stack-config address (see infra.docker.render).
ALWAYS_PUBLISHED = ("nginx",)
MONITORING_PUBLISHED = ("prometheus", "grafana")
#: Services of the catalog the docker target cannot run yet: pgBackRest's repository
#: and database-host agent need two programs sharing the cluster's data directory.
NOT_ON_DOCKER = ("pgbackrest", "pgbackrest_pg", "pgbackrest_exporter")


# --- health checks: curl, pg_isready and redis-cli are in every image (runtime layer) --
def _http(*urls: str, start_period_s: int = 10) -> Healthcheck:
    script = " && ".join(f"curl -fsS -o /dev/null --max-time 2 {shlex.quote(u)}" for u in urls)
    return Healthcheck(("CMD-SHELL", script), start_period_s=start_period_s)


def _local(port: int, path: str) -> str:
    return f"http://127.0.0.1:{port}{path}"


def _pg_ready(port: int) -> Healthcheck:
    return Healthcheck(("CMD", "pg_isready", "-q", "-h", "127.0.0.1", "-p", str(port)),
                       start_period_s=60)


# --- one builder per service -------------------------------------------------------------
class _Planner:
    def __init__(self, topology: Topology, layout: DockerLayout) -> None:
        self.topology = topology
        self.layout = layout
        self.ctx = DockerContext(topology, layout, external_services=ALWAYS_PUBLISHED)
        self.sizing = topology.sizing
        apps = topology.instances("app")
        self.first_app = apps[0] if apps else None
        self.images = image_plan(topology, self.resolve)

    def resolve(self, service: str, expression: str) -> str:
        """A Jinja expression with the service's role variables on its (first) host."""
        found = self.topology.instances(service)
        if not found:
            raise KeyError(f"stack {self.topology.stack!r} runs no {service}")
        return self.ctx.render_string(expression, found[0].host, role_of(service))

    def uid(self, svc: Service) -> str:
        return str(svc.kind.docker_uid)

    def spec(self, svc: Service, program: Program | None = None, **fields: object
             ) -> ContainerSpec:
        """The container of a service running its role's program as its user."""
        program = program or supervised_program(self.ctx, svc)
        uid = self.uid(svc)
        defaults: dict[str, object] = dict(
            host=svc.host, service=svc.name, port=svc.port,
            image=image_name(self.topology, svc.name), entrypoint=program.argv,
            env=program.environment, user=f"{uid}:{uid}", workdir=program.directory,
            stop_signal=program.stop_signal, stop_timeout_s=program.stop_timeout_s)
        defaults.update(fields)
        return ContainerSpec(**defaults)  # type: ignore[arg-type]

    def role_files(self, svc: Service) -> list[FileSpec]:
        uid = self.uid(svc)
        return role_files(self.ctx, svc, uid, uid)

    def nginx(self, svc: Service) -> ContainerSpec:
        return self.spec(svc, healthcheck=_http(_local(svc.port, "/nginx_status")),
                         files=tuple(self.role_files(svc)), memory_mb=128, cpus=1.0,
                         after=("app",))

    def app(self, svc: Service) -> ContainerSpec:
        sizing = self.sizing.app
        workload = self.topology.workload
        program = supervised_program(self.ctx, svc)
        first = self.first_app is not None and svc.host == self.first_app.host
        entrypoint = program.argv
        if workload.django_settings and first:
            # Migrations once for all app hosts, like the role's run_once task: the
            # first app host migrates before it serves; the others wait for it.
            venv = self.resolve("app", "{{ app_venv }}")
            entrypoint = ("sh", "-c", f'{venv}/bin/python -m django migrate --noinput && '
                          'exec "$@"', "migrate-then-serve", *program.argv)
        env = dict(program.environment)
        if workload.django_settings:
            env["DJANGO_SETTINGS_MODULE"] = workload.django_settings
        urls = [_local(svc.port, workload.health_path)]
        if svc.metrics_port != svc.port and svc.kind.metrics_path:
            # The master's own metrics listener (what Prometheus scrapes).
            urls.append(_local(svc.metrics_port, svc.kind.metrics_path))
        after_containers = () if first or self.first_app is None else (
            self.layout.container(self.first_app.host, "app"),)
        return self.spec(
            svc, program, image=image_name(self.topology, "app"), entrypoint=entrypoint,
            env=env, healthcheck=_http(*urls, start_period_s=60),
            files=tuple(self.role_files(svc)),
            memory_mb=128 + 96 * sizing.workers * max(1, sizing.threads // 4), cpus=1.0,
            stop_timeout_s=max(program.stop_timeout_s, sizing.timeout_s + 5),
            after=("pgbouncer", "redis"), after_containers=after_containers,
            wait_healthy=first, wait_timeout_s=240)

    def postgresql(self, svc: Service) -> ContainerSpec:
        sizing = self.sizing.postgresql
        program = supervised_program(self.ctx, svc)
        context = self.ctx.for_host(svc.host, "postgresql")
        uid = self.uid(svc)
        files = [pg_hba_for_docker(f, self.layout.subnet) if f.path.endswith("/pg_hba.conf")
                 else f for f in self.role_files(svc)]
        conf_dir = context["postgresql_conf_dir"]
        superuser_secret = context["postgresql_superuser_secret"]
        # Counterpart of postgresql/tasks/create_cluster.yml and database.yml: initdb
        # on an empty volume, the includes, the roles and database, then the program.
        files.append(static_file(f"{conf_dir}/first-start.sh",
                                 POSTGRESQL_FIRST_START.read_text(encoding="utf-8"),
                                 repo_relative(POSTGRESQL_FIRST_START), uid, mode="0755"))
        files.append(secret_file(f"{context['postgresql_dir']}/initdb.pwfile", superuser_secret,
                                 uid))
        files.append(initdb_sql(context, f"{conf_dir}/first-start.sql", uid))
        files.append(static_file(f"{conf_dir}/first-start.conf",
                                 postgresql_includes(self.ctx, svc.host),
                                 "generated (postgresql/tasks/configure.yml: blockinfile)", uid))
        env = {**program.environment, "PGDATA": context["postgresql_data_dir"],
               "CP_PG_BIN": context["postgresql_bin_dir"], "CP_PG_CONF_DIR": conf_dir,
               "CP_PG_RUN_DIR": context["postgresql_run_dir"],
               "CP_PG_SUPERUSER": context["postgresql_superuser"],
               "CP_PG_PWFILE": f"{context['postgresql_dir']}/initdb.pwfile"}
        return self.spec(
            svc, program, entrypoint=(f"{conf_dir}/first-start.sh", *program.argv), env=env,
            healthcheck=_pg_ready(svc.port),
            volumes=((self.layout.volume(svc.host, svc.name),
                      context["postgresql_data_dir"]),),
            files=tuple(files),
            memory_mb=sizing.shared_buffers_mb + 64 + 2 * sizing.max_connections + 128,
            cpus=1.0, shm_mb=256, wait_healthy=True, wait_timeout_s=180)

    def pgbouncer(self, svc: Service) -> ContainerSpec:
        return self.spec(svc, healthcheck=_pg_ready(svc.port),
                         files=tuple(self.role_files(svc)), memory_mb=64, cpus=0.5,
                         after=("postgresql",), wait_healthy=True, wait_timeout_s=60)

    def redis(self, svc: Service) -> ContainerSpec:
        sizing = self.sizing.redis
        redis_dir = self.resolve("redis", "{{ redis_dir }}")
        return self.spec(
            svc,
            # Unauthenticated PING answers NOAUTH: alive, without the password on the
            # command line (where `docker inspect` would show it).
            healthcheck=Healthcheck(("CMD-SHELL", f"redis-cli -p {svc.port} ping | grep -qE "
                                     "'PONG|NOAUTH'")),
            volumes=((self.layout.volume(svc.host, svc.name), redis_dir),),
            files=tuple(self.role_files(svc)),
            memory_mb=sizing.maxmemory_mb + max(32, sizing.maxmemory_mb // 4), cpus=0.5,
            wait_healthy=True, wait_timeout_s=60)

    def _rendered(self, svc: Service, sources: list[tuple[Path, str]]) -> list[FileSpec]:
        # Config files are root's and world-readable, as the roles install them.
        return [FileSpec.from_rendered(dest, self.ctx.render(src, svc.host)) for src, dest
                in sources]

    def prometheus(self, svc: Service) -> ContainerSpec:
        directory = self.resolve("prometheus", "{{ prometheus_dir }}")
        sources = [(PROMETHEUS_DIR / "prometheus.yml.j2", f"{directory}/prometheus.yml")]
        sources += [(rule, f"{directory}/rules/{rule.name.removesuffix('.j2')}")
                    for rule in sorted((PROMETHEUS_DIR / "rules").glob("*.yml.j2"))]
        return self.spec(svc, healthcheck=_http(_local(svc.port, "/-/ready")),
                         volumes=((self.layout.volume(svc.host, svc.name), f"{directory}/data"),),
                         files=tuple(self._rendered(svc, sources)), memory_mb=512, cpus=0.5)

    def alertmanager(self, svc: Service) -> ContainerSpec:
        directory = self.resolve("alertmanager", "{{ alertmanager_dir }}")
        sources = [(ALERTMANAGER_DIR / "alertmanager.yml.j2", f"{directory}/alertmanager.yml")]
        return self.spec(svc, healthcheck=_http(_local(svc.port, "/-/ready")),
                         files=tuple(self._rendered(svc, sources)), memory_mb=128, cpus=0.25,
                         after_containers=(self.layout.container(svc.host, "notification_log"),))

    def notification_log(self, svc: Service) -> ContainerSpec:
        """The lab pager (Alertmanager's webhook receiver), next to Alertmanager."""
        program = supervised_program(self.ctx, svc, name="notification_log")
        directory = self.resolve("alertmanager", "{{ alertmanager_dir }}")
        log_dir = self.resolve("alertmanager", "{{ alertmanager_notification_log | dirname }}")
        port = self.topology.monitoring.webhook_port
        return self.spec(
            svc, program, service="notification_log", port=port,
            image=image_name(self.topology, "alertmanager"),
            healthcheck=_http(_local(port, "/-/healthy")),
            # A volume of its own: the GameDay engine reads the log where the engine
            # keeps it (DockerTarget.notification_log), as it reads the file locally.
            volumes=((self.layout.volume(svc.host, "notification_log"), log_dir),),
            files=(static_file(f"{directory}/notification_log.py",
                               NOTIFICATION_LOG.read_text(encoding="utf-8"),
                               repo_relative(NOTIFICATION_LOG)),),
            memory_mb=64, cpus=0.25, wait_healthy=True, wait_timeout_s=60)

    # Exporters: their role (exporters) has the program; files go where its flags point.
    def node_exporter(self, svc: Service) -> ContainerSpec:
        return self.spec(svc, healthcheck=_http(_local(svc.port, "/metrics")), memory_mb=64,
                         cpus=0.25)

    def _exporter_secret(self, svc: Service, var: str) -> str:
        return str(self.ctx.variable(svc.host, "exporters", var))

    def postgres_exporter(self, svc: Service) -> ContainerSpec:
        program = supervised_program(self.ctx, svc)
        uid = self.uid(svc)
        secret = self._exporter_secret(svc, "postgres_exporter_db_secret")
        files = [secret_file(program.environment["DATA_SOURCE_PASS_FILE"], secret, uid)]
        queries = _flag(list(program.argv), "--extend.query-path")
        if queries:
            source = MONITORING_DIR / "exporters" / "postgres_exporter_queries.yml"
            files.append(static_file(queries, source.read_text(encoding="utf-8"),
                                     repo_relative(source)))
        return self.spec(svc, program, healthcheck=_http(_local(svc.port, "/metrics")),
                         files=tuple(files), memory_mb=64, cpus=0.25, after=("postgresql",))

    def redis_exporter(self, svc: Service) -> ContainerSpec:
        program = supervised_program(self.ctx, svc)
        uid = self.uid(svc)
        secret = self._exporter_secret(svc, "redis_exporter_secret")
        addr = _flag(list(program.argv), "-redis.addr")
        password_file = _flag(list(program.argv), "-redis.password-file")
        files = []
        if password_file and addr:
            # Counterpart of exporters/tasks/redis_exporter.yml: redis_exporter 1.45's
            # password file is a JSON map of Redis URI to password.
            files.append(FileSpec(
                path=password_file, source="generated (exporters/tasks/redis_exporter.yml)",
                secrets=(secret,), produce=lambda values: json.dumps({addr: values[secret]}),
                owner=uid, group=uid, mode="0400"))
        return self.spec(svc, program, healthcheck=_http(_local(svc.port, "/metrics")),
                         files=tuple(files), memory_mb=64, cpus=0.25, after=("redis",))

    def nginx_exporter(self, svc: Service) -> ContainerSpec:
        nginx = self.topology.instances("nginx")
        if nginx and nginx[0].host != svc.host:
            raise ConfigError([f"{self.topology.source}: hosts.{svc.host}: the docker target "
                               f"needs nginx_exporter on nginx's host ({nginx[0].host}): "
                               "nginx serves stub_status to 127.0.0.1 only"])
        # The scrape URI is nginx's stack address (see render.py: nginx keeps it); in
        # the edge host's namespace 127.0.0.0/8 is loopback, so the request comes from
        # 127.0.0.1 as stub_status requires, exactly as on the local target.
        return self.spec(svc, healthcheck=_http(_local(svc.port, "/metrics")), memory_mb=32,
                         cpus=0.25, after=("nginx",))

    def pgbouncer_exporter(self, svc: Service) -> ContainerSpec:
        program = supervised_program(self.ctx, svc)
        uid = self.uid(svc)
        script = program.argv[1]
        source = MONITORING_DIR / "exporters" / "pgbouncer_exporter.py"
        secret = self._exporter_secret(svc, "pgbouncer_exporter_db_secret")
        files = [static_file(script, source.read_text(encoding="utf-8"), repo_relative(source))]
        password_file = _flag(list(program.argv), "--password-file")
        if password_file:
            files.append(secret_file(password_file, secret, uid))
        return self.spec(svc, program, healthcheck=_http(_local(svc.port, "/metrics")),
                         # Python, scraped every second with a 0.8 s deadline: at 0.25 CPU
                         # the CFS quota alone made scrapes miss it under load (measured:
                         # PgbouncerDown flapped for 2 s twice in a redis-down GameDay).
                         files=tuple(files), memory_mb=96, cpus=0.5, after=("pgbouncer",))

    def grafana(self, host: str, prometheus: Service) -> ContainerSpec:
        # monitoring/grafana/provisioning/** → Grafana's provisioning directory (`.j2`
        # files rendered with the Docker context, so a datasource templated on
        # cp_endpoints points at `monitor:9090`); monitoring/grafana/dashboards/**.json
        # → where the dashboard provider there reads them (GRAFANA_DASHBOARDS_DIR if
        # it names no path).
        files = []
        provisioning = GRAFANA_DIR / "provisioning"
        for path in sorted(p for p in provisioning.rglob("*") if p.is_file()):
            dest = f"/etc/grafana/provisioning/{str(path.relative_to(provisioning))}"
            if path.suffix == ".j2":
                files.append(FileSpec.from_rendered(dest.removesuffix(".j2"),
                                                    self.ctx.render(path, host),
                                                    GRAFANA_UID, GRAFANA_UID))
            else:
                files.append(static_file(dest, path.read_text(encoding="utf-8"),
                                         repo_relative(path), GRAFANA_UID))
        dashboards_dir = dashboard_provider_path(files) or GRAFANA_DASHBOARDS_DIR
        for path in sorted((GRAFANA_DIR / "dashboards").rglob("*.json")):
            rel = path.relative_to(GRAFANA_DIR / "dashboards")
            files.append(static_file(f"{dashboards_dir.rstrip('/')}/{rel}",
                                     path.read_text(encoding="utf-8"),
                                     repo_relative(path), GRAFANA_UID))
        admin_password = "/run/secrets/civicpulse/grafana_admin"
        files.append(secret_file(admin_password, "grafana_admin", GRAFANA_UID))
        return ContainerSpec(
            host=host, service="grafana", port=GRAFANA_PORT, image=GRAFANA_IMAGE, pulled=True,
            env={"GF_SERVER_HTTP_ADDR": "0.0.0.0", "GF_SERVER_HTTP_PORT": str(GRAFANA_PORT),
                 "GF_SECURITY_ADMIN_USER": "admin",
                 "GF_SECURITY_ADMIN_PASSWORD__FILE": admin_password,
                 "GF_USERS_ALLOW_SIGN_UP": "false",
                 "GF_ANALYTICS_REPORTING_ENABLED": "false",
                 "GF_ANALYTICS_CHECK_FOR_UPDATES": "false",
                 "GF_PATHS_PROVISIONING": "/etc/grafana/provisioning",
                 # Expanded by Grafana in monitoring/grafana/provisioning/datasources.
                 "CP_PROMETHEUS_URL": f"http://{prometheus.host}:{prometheus.port}",
                 "CP_SCRAPE_INTERVAL": f"{self.topology.monitoring.scrape_interval_s}s"},
            # The upstream image has wget (busybox), not curl.
            healthcheck=Healthcheck(("CMD", "wget", "-q", "-O", "/dev/null",
                                     _local(GRAFANA_PORT, "/api/health"))),
            volumes=((self.layout.volume(host, "grafana"), "/var/lib/grafana"),),
            files=tuple(files), memory_mb=256, cpus=0.5, after=(prometheus.name,))


def _flag(args: list[str], name: str) -> str | None:
    """The value of `name=value` or `name value` in an argument list."""
    for i, arg in enumerate(args):
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
        if arg == name and i + 1 < len(args):
            return args[i + 1]
    return None


def plan(topology: Topology, publish_monitoring: bool = False, grafana: bool = True
         ) -> StackPlan:
    """Every container of the stack, host by host; ConfigError if Docker cannot run it.

    `grafana=False` leaves Grafana out (a machine that cannot pull its image).
    """
    unsupported = [f"hosts.{s.host}: {s.name}" for s in topology.services
                   if s.name in NOT_ON_DOCKER]
    if unsupported:
        raise ConfigError([f"{topology.source}: {where}: backups (pgBackRest) run on the local "
                           "target only so far; remove it from the stack for the docker "
                           "target" for where in unsupported])
    layout = layout_for(topology)
    planner = _Planner(topology, layout)
    prometheus = topology.instances("prometheus")
    hosts = []
    for host in topology.hosts:
        specs = []
        for svc in host.services:
            build: Callable[[Service], ContainerSpec] = getattr(planner, svc.name)
            if svc.name == "alertmanager":
                specs.append(planner.notification_log(svc))
            specs.append(build(svc))
        if grafana and prometheus and prometheus[0].host == host.name:
            taken = {s.port for s in host.services}
            if GRAFANA_PORT in taken:
                raise ConfigError([f"{topology.source}: hosts.{host.name}: Grafana (docker "
                                   f"target) needs port {GRAFANA_PORT} on the Prometheus host"])
            specs.append(planner.grafana(host.name, prometheus[0]))
        published = ALWAYS_PUBLISHED + (MONITORING_PUBLISHED if publish_monitoring else ())
        address = layout.hosts[host.name].address
        specs = [_with_ports(s, address) if s.service in published else s for s in specs]
        hl = layout.hosts[host.name]
        hosts.append(HostPlan(name=host.name, alias=hl.alias, sandbox=hl.sandbox, ip=hl.ip,
                              containers=tuple(specs)))
    return StackPlan(topology=topology, layout=layout, hosts=tuple(hosts),
                     publish_monitoring=publish_monitoring, images=planner.images)


def _with_ports(spec: ContainerSpec, address: str) -> ContainerSpec:
    return replace(spec, ports=(PublishedPort(internal=spec.port, external=spec.port,
                                              ip=address),))

