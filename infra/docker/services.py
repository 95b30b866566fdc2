"""What each service needs as a container: image, command, files, health check, limits.

Pure data, no Pulumi: `plan(topology)` returns one `ContainerSpec` (`infra.docker.specs`)
per service per host (plus Grafana on the Prometheus host), and
`infra.docker.program` turns the specs into resources. Config files are rendered from
the Ansible role templates (`infra.docker.container_files`, through
`infra.docker.render`), exporter command lines from the exporters role's variables;
the few files no template covers (PostgreSQL's include file and first-start SQL,
redis_exporter's password map) say which role task they stand in for.

Everything here is checked by the unit tests with Pulumi's mocks only; none of it
has run against a Docker engine on the machine it was written on (there was none).
"""

from __future__ import annotations

import json
import shlex
from dataclasses import replace
from pathlib import Path

from infra.catalog import SERVICE_KINDS
from infra.docker.container_files import (
    ROLE_FILES,
    SERVICE_VARS,
    dashboard_provider_path,
    initdb_sql,
    pg_hba_for_docker,
    role_files,
    secret_file,
    static_file,
)
from infra.docker.layout import DockerLayout, layout_for
from infra.docker.render import MONITORING_DIR, DockerContext, repo_relative
from infra.docker.specs import (
    UID_APP,
    UID_GRAFANA,
    UID_NOBODY,
    UID_POSTGRES_DEBIAN,
    UID_REDIS_DEBIAN,
    UID_REDIS_EXPORTER,
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

#: The image the workload is built into (app and our own pgbouncer exporter run it).
APP_IMAGE = SERVICE_KINDS["app"].docker_image
APP_DOCKERFILE = REPO_ROOT / "app" / "Dockerfile"
#: Grafana is not a service of the stack config (the local target has none): the
#: docker target adds it next to Prometheus. Pinned like the catalog's images.
GRAFANA_IMAGE = "grafana/grafana:10.4.2"
GRAFANA_PORT = 3000
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

#: PgBouncer images differ in where the binary is and which user runs it.
PGBOUNCER_IMAGES: dict[str, tuple[str, str]] = {
    "edoburu/pgbouncer": ("/usr/bin/pgbouncer", "70"),
    "bitnami/pgbouncer": ("/opt/bitnami/pgbouncer/bin/pgbouncer", "1001"),
}
#: Images built FROM scratch: no shell, no wget, so Docker cannot health-check them;
#: Prometheus' `up{job=…}` is their health. (`-alpine` variants have a shell.)
SCRATCH_IMAGES = ("oliver006/redis_exporter:", "nginx/nginx-prometheus-exporter:")


# --- helpers ---------------------------------------------------------------------------
def _wget(port: int, path: str) -> Healthcheck:
    # busybox wget: in the prom/* images, the exporters' busybox bases and alpine.
    return Healthcheck(("CMD", "wget", "-q", "-O", "/dev/null", f"http://127.0.0.1:{port}{path}"))


def _python_http(port: int, path: str, start_period_s: int = 10,
                 also: tuple[tuple[int, str], ...] = ()) -> Healthcheck:
    """Healthy when every URL (port+path, then each of `also`) answers 200."""
    # The python:slim base has neither curl nor wget.
    urls = [f"http://127.0.0.1:{p}{q}" for p, q in ((port, path), *also)]
    code = ("import sys, urllib.request; "
            f"sys.exit(any(urllib.request.urlopen(u, timeout=2).status != 200 for u in {urls!r}))")
    return Healthcheck(("CMD", "python", "-c", code), start_period_s=start_period_s)


# --- one builder per service -------------------------------------------------------------
class _Planner:
    def __init__(self, topology: Topology, layout: DockerLayout) -> None:
        self.topology = topology
        self.layout = layout
        self.ctx = DockerContext(topology, layout, SERVICE_VARS, external_services=ALWAYS_PUBLISHED)
        self.sizing = topology.sizing
        apps = topology.instances("app")
        self.first_app = apps[0] if apps else None

    def container(self, host: str, service: str) -> str:
        return self.layout.container(host, service)

    def exported(self, svc: Service) -> Service | None:
        target = svc.kind.exports
        found = self.topology.instances(target) if target else ()
        return found[0] if found else None

    def nginx(self, svc: Service) -> ContainerSpec:
        nginx_dir = SERVICE_VARS["nginx"]["nginx_dir"]
        files = role_files(self.ctx, svc)
        # nginx creates its *_temp_path directories at start, but not their parent.
        files.append(static_file(f"{nginx_dir}/temp/.keep", "", "empty: creates temp/"))
        return ContainerSpec(
            host=svc.host, service=svc.name, port=svc.port, image=svc.kind.docker_image,
            entrypoint=("nginx",),
            command=("-c", f"{nginx_dir}/nginx.conf", "-p", nginx_dir, "-g", "daemon off;"),
            healthcheck=_wget(svc.port, "/nginx_status"), files=tuple(files),
            memory_mb=128, cpus=1.0, stop_signal="SIGQUIT", after=("app",))

    def app(self, svc: Service) -> ContainerSpec:
        sizing = self.sizing.app
        workload = self.topology.workload
        app_vars = SERVICE_VARS["app"]
        config = "/etc/civicpulse/app/config.json"
        gunicorn = ["gunicorn"]
        if workload.gunicorn_config:
            gunicorn += ["-c", workload.gunicorn_config]
        gunicorn += ["--bind", f"0.0.0.0:{svc.port}", "--workers", str(sizing.workers),
                     "--worker-class", sizing.worker_class, "--threads", str(sizing.threads),
                     "--timeout", str(sizing.timeout_s), "--chdir", app_vars["app_src"],
                     workload.wsgi]
        env = {"CIVICPULSE_CONFIG": config, "PROMETHEUS_MULTIPROC_DIR": app_vars["app_metrics_dir"],
               "PYTHONPATH": app_vars["app_src"], "PYTHONDONTWRITEBYTECODE": "1"}
        first = self.first_app is not None and svc.host == self.first_app.host
        command: tuple[str, ...] = tuple(gunicorn)
        if workload.django_settings:
            env["DJANGO_SETTINGS_MODULE"] = workload.django_settings
            if first:
                # Migrations once for all app hosts, like the role's run_once task: the
                # first app host migrates before it serves; the others wait for it.
                command = ("sh", "-c", 'python -m django migrate --noinput && exec "$@"',
                           "migrate-then-serve", *gunicorn)
        after_containers = () if first or self.first_app is None else (
            self.container(self.first_app.host, "app"),)
        return ContainerSpec(
            host=svc.host, service=svc.name, port=svc.port, image=APP_IMAGE, built=True,
            command=command, env=env,
            # The workers' health view, and the master's own metrics listener (what
            # Prometheus scrapes; see app/civicpulse/gunicorn_conf.py).
            healthcheck=_python_http(
                svc.port, workload.health_path, start_period_s=60,
                also=(((svc.metrics_port, svc.kind.metrics_path),)
                      if svc.metrics_port != svc.port and svc.kind.metrics_path else ())),
            files=tuple(role_files(self.ctx, svc, UID_APP, UID_APP)),
            memory_mb=128 + 96 * sizing.workers * max(1, sizing.threads // 4),
            cpus=1.0, stop_signal="SIGTERM", stop_timeout_s=sizing.timeout_s + 5,
            after=("pgbouncer", "redis"), after_containers=after_containers,
            wait_healthy=first, wait_timeout_s=240)

    def postgresql(self, svc: Service) -> ContainerSpec:
        pg_vars = SERVICE_VARS["postgresql"]
        sizing = self.sizing.postgresql
        files = role_files(self.ctx, svc)
        files = [pg_hba_for_docker(f, self.layout.subnet) if f.path.endswith("/pg_hba.conf")
                 else f for f in files]
        conf_dir = pg_vars["postgresql_conf_dir"]
        # The role appends these includes to the cluster's postgresql.conf; here our
        # file is the config file and the image's initdb output stays unused.
        files.append(static_file(
            f"{conf_dir}/postgresql.conf",
            f"# docker target: the role includes these from the cluster's postgresql.conf\n"
            f"include '{conf_dir}/postmaster.conf'\ninclude '{conf_dir}/runtime.conf'\n",
            "generated (postgresql/tasks/configure.yml: blockinfile)"))
        context = self.ctx.for_host(svc.host, "postgresql")
        superuser_secret = context["postgresql_superuser_secret"]
        password_file = f"/run/secrets/civicpulse/{superuser_secret}"
        files.append(secret_file(password_file, superuser_secret, UID_POSTGRES_DEBIAN))
        files.append(initdb_sql(context))
        return ContainerSpec(
            host=svc.host, service=svc.name, port=svc.port, image=svc.kind.docker_image,
            command=("postgres", "-c", f"config_file={conf_dir}/postgresql.conf"),
            env={"POSTGRES_USER": context["postgresql_superuser"],
                 "POSTGRES_PASSWORD_FILE": password_file,
                 "POSTGRES_INITDB_ARGS": "--auth=scram-sha-256 --encoding=UTF8 "
                                         "--locale=C.UTF-8 --data-checksums",
                 "PGDATA": pg_vars["postgresql_data_dir"]},
            healthcheck=Healthcheck(("CMD", "pg_isready", "-q", "-h", "127.0.0.1", "-p",
                                     str(svc.port), "-U", context["postgresql_app_role"],
                                     "-d", sizing.database), start_period_s=60),
            volumes=((self.layout.volume(svc.host, svc.name), pg_vars["postgresql_data_dir"]),),
            files=tuple(files),
            memory_mb=sizing.shared_buffers_mb + 64 + 2 * sizing.max_connections + 128,
            cpus=1.0, shm_mb=256, stop_signal="SIGINT", stop_timeout_s=60,
            wait_healthy=True, wait_timeout_s=180)

    def pgbouncer(self, svc: Service) -> ContainerSpec:
        repo = svc.kind.docker_image.split(":", 1)[0]
        if repo not in PGBOUNCER_IMAGES:
            raise ConfigError([f"infra/catalog.py: pgbouncer image {svc.kind.docker_image!r}: "
                               "the docker target knows how to run "
                               f"{', '.join(sorted(PGBOUNCER_IMAGES))} (add it to "
                               "infra/docker/services.py PGBOUNCER_IMAGES)"])
        binary, uid = PGBOUNCER_IMAGES[repo]
        pgb_dir = SERVICE_VARS["pgbouncer"]["pgbouncer_dir"]
        return ContainerSpec(
            host=svc.host, service=svc.name, port=svc.port, image=svc.kind.docker_image,
            entrypoint=(binary,), command=(f"{pgb_dir}/pgbouncer.ini",), user=uid,
            healthcheck=Healthcheck(("CMD", "pg_isready", "-q", "-h", "127.0.0.1", "-p",
                                     str(svc.port))),
            files=tuple(role_files(self.ctx, svc, uid, uid)),
            memory_mb=64, cpus=0.5, stop_signal="SIGINT", stop_timeout_s=15,
            after=("postgresql",), wait_healthy=True, wait_timeout_s=60)

    def redis(self, svc: Service) -> ContainerSpec:
        sizing = self.sizing.redis
        conf = ROLE_FILES["redis"]["redis.conf.j2"]
        return ContainerSpec(
            host=svc.host, service=svc.name, port=svc.port, image=svc.kind.docker_image,
            command=("redis-server", conf),
            # Unauthenticated PING answers NOAUTH: alive, without the password on the
            # command line (where `docker inspect` would show it).
            healthcheck=Healthcheck(("CMD-SHELL", f"redis-cli -p {svc.port} ping | grep -qE "
                                     "'PONG|NOAUTH'")),
            volumes=((self.layout.volume(svc.host, svc.name), "/data"),),
            files=tuple(role_files(self.ctx, svc, UID_REDIS_DEBIAN, UID_REDIS_DEBIAN)),
            memory_mb=sizing.maxmemory_mb + max(32, sizing.maxmemory_mb // 4), cpus=0.5,
            wait_healthy=True, wait_timeout_s=60)

    def _monitoring_files(self, svc: Service, sources: list[tuple[Path, str]],
                          owner: str) -> list[FileSpec]:
        return [FileSpec.from_rendered(dest, self.ctx.render(src, svc.host), owner, owner)
                for src, dest in sources]

    def prometheus(self, svc: Service) -> ContainerSpec:
        sources = [(PROMETHEUS_DIR / "prometheus.yml.j2", "/etc/prometheus/prometheus.yml")]
        sources += [(rule, f"/etc/prometheus/rules/{rule.name.removesuffix('.j2')}")
                    for rule in sorted((PROMETHEUS_DIR / "rules").glob("*.yml.j2"))]
        return ContainerSpec(
            host=svc.host, service=svc.name, port=svc.port, image=svc.kind.docker_image,
            command=("--config.file=/etc/prometheus/prometheus.yml",
                     "--storage.tsdb.path=/prometheus",
                     f"--storage.tsdb.retention.time={self.sizing.prometheus.retention}",
                     f"--web.listen-address=0.0.0.0:{svc.port}", "--web.enable-lifecycle"),
            healthcheck=_wget(svc.port, "/-/ready"),
            volumes=((self.layout.volume(svc.host, svc.name), "/prometheus"),),
            files=tuple(self._monitoring_files(svc, sources, UID_NOBODY)),
            memory_mb=512, cpus=0.5)

    def alertmanager(self, svc: Service) -> ContainerSpec:
        sources = [(ALERTMANAGER_DIR / "alertmanager.yml.j2",
                    "/etc/alertmanager/alertmanager.yml")]
        return ContainerSpec(
            host=svc.host, service=svc.name, port=svc.port, image=svc.kind.docker_image,
            command=("--config.file=/etc/alertmanager/alertmanager.yml",
                     "--storage.path=/alertmanager",
                     f"--web.listen-address=0.0.0.0:{svc.port}",
                     # No clustering: it would listen on 0.0.0.0:9094 (DESIGN.md).
                     "--cluster.listen-address="),
            healthcheck=_wget(svc.port, "/-/ready"),
            files=tuple(self._monitoring_files(svc, sources, UID_NOBODY)),
            memory_mb=128, cpus=0.25)

    # Exporters: the command line is the exporters role's `<exporter>_command`
    # (playbooks/roles/exporters/vars/main.yml) rendered for Docker, minus the Debian
    # binary; the image's entrypoint is the same upstream exporter, same version. Files
    # go where those flags point (under cp_host_dir, /var/lib/civicpulse here).
    def _exporter_args(self, svc: Service) -> list[str]:
        command = self.ctx.variable(svc.host, "exporters", f"{svc.name}_command")
        return shlex.split(str(command))[1:]

    def _exporter_env(self, svc: Service) -> dict[str, str]:
        env = self.ctx.for_host(svc.host, "exporters").get(f"{svc.name}_environment") or {}
        return {str(k): str(v) for k, v in env.items()}

    def _exporter_secret(self, svc: Service, var: str) -> str:
        return str(self.ctx.variable(svc.host, "exporters", var))

    def node_exporter(self, svc: Service) -> ContainerSpec:
        return ContainerSpec(
            host=svc.host, service=svc.name, port=svc.port, image=svc.kind.docker_image,
            command=tuple(self._exporter_args(svc)),
            healthcheck=_wget(svc.port, "/metrics"), memory_mb=64, cpus=0.25)

    def postgres_exporter(self, svc: Service) -> ContainerSpec:
        args = self._exporter_args(svc)
        env = self._exporter_env(svc)
        secret = self._exporter_secret(svc, "postgres_exporter_db_secret")
        files = [secret_file(env["DATA_SOURCE_PASS_FILE"], secret, UID_NOBODY)]
        queries = _flag(args, "--extend.query-path")
        if queries:
            source = MONITORING_DIR / "exporters" / "postgres_exporter_queries.yml"
            files.append(static_file(queries, source.read_text(encoding="utf-8"),
                                      repo_relative(source), UID_NOBODY))
        return ContainerSpec(
            host=svc.host, service=svc.name, port=svc.port, image=svc.kind.docker_image,
            command=tuple(args), env=env, healthcheck=_wget(svc.port, "/metrics"),
            files=tuple(files), memory_mb=64, cpus=0.25, after=("postgresql",))

    def redis_exporter(self, svc: Service) -> ContainerSpec:
        args = self._exporter_args(svc)
        secret = self._exporter_secret(svc, "redis_exporter_secret")
        addr = _flag(args, "-redis.addr")
        password_file = _flag(args, "-redis.password-file")
        files = []
        if password_file and addr:
            # Counterpart of exporters/tasks/redis_exporter.yml: redis_exporter 1.45's
            # password file is a JSON map of Redis URI to password.
            files.append(FileSpec(
                path=password_file, source="generated (exporters/tasks/redis_exporter.yml)",
                secrets=(secret,), produce=lambda values: json.dumps({addr: values[secret]}),
                owner=UID_REDIS_EXPORTER, group=UID_REDIS_EXPORTER, mode="0400"))
        image = svc.kind.docker_image
        return ContainerSpec(
            host=svc.host, service=svc.name, port=svc.port, image=image, command=tuple(args),
            healthcheck=_scratch_aware(image, _wget(svc.port, "/metrics")),
            files=tuple(files), memory_mb=64, cpus=0.25, after=("redis",))

    def nginx_exporter(self, svc: Service) -> ContainerSpec:
        nginx = self.exported(svc)
        if nginx is not None and nginx.host != svc.host:
            raise ConfigError([f"{self.topology.source}: hosts.{svc.host}: the docker target "
                               f"needs nginx_exporter on nginx's host ({nginx.host}): nginx "
                               "serves stub_status to 127.0.0.1 only"])
        image = svc.kind.docker_image
        # The scrape URI is nginx's stack address (see render.py: nginx keeps it); in
        # the edge host's namespace 127.0.0.0/8 is loopback, so the request comes from
        # 127.0.0.1 as stub_status requires, exactly as on the local target.
        return ContainerSpec(
            host=svc.host, service=svc.name, port=svc.port, image=image,
            command=tuple(self._exporter_args(svc)),
            healthcheck=_scratch_aware(image, _wget(svc.port, "/metrics")),
            memory_mb=32, cpus=0.25, after=("nginx",))

    def pgbouncer_exporter(self, svc: Service) -> ContainerSpec:
        # Ours (monitoring/exporters/pgbouncer_exporter.py) needs prometheus-client and
        # psycopg, which the app image has: it runs there, the script uploaded.
        args = self._exporter_args(svc)
        script = args[0]
        source = MONITORING_DIR / "exporters" / "pgbouncer_exporter.py"
        secret = self._exporter_secret(svc, "pgbouncer_exporter_db_secret")
        files = [static_file(script, source.read_text(encoding="utf-8"),
                              repo_relative(source), UID_APP)]
        password_file = _flag(args, "--password-file")
        if password_file:
            files.append(secret_file(password_file, secret, UID_APP))
        return ContainerSpec(
            host=svc.host, service=svc.name, port=svc.port, image=APP_IMAGE, built=True,
            entrypoint=("python",), command=tuple(args),
            healthcheck=_python_http(svc.port, "/metrics"), files=tuple(files),
            memory_mb=96, cpus=0.25, after=("pgbouncer",))

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
                                                    UID_GRAFANA, UID_GRAFANA))
            else:
                files.append(static_file(dest, path.read_text(encoding="utf-8"),
                                          repo_relative(path), UID_GRAFANA))
        dashboards_dir = dashboard_provider_path(files) or GRAFANA_DASHBOARDS_DIR
        for path in sorted((GRAFANA_DIR / "dashboards").rglob("*.json")):
            rel = path.relative_to(GRAFANA_DIR / "dashboards")
            files.append(static_file(f"{dashboards_dir.rstrip('/')}/{rel}",
                                      path.read_text(encoding="utf-8"),
                                      repo_relative(path), UID_GRAFANA))
        admin_password = "/run/secrets/civicpulse/grafana_admin"
        files.append(secret_file(admin_password, "grafana_admin", UID_GRAFANA))
        return ContainerSpec(
            host=host, service="grafana", port=GRAFANA_PORT, image=GRAFANA_IMAGE,
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
            healthcheck=_wget(GRAFANA_PORT, "/api/health"),
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


def _scratch_aware(image: str, check: Healthcheck) -> Healthcheck | None:
    if image.startswith(SCRATCH_IMAGES) and "-alpine" not in image:
        return None
    return check


def plan(topology: Topology, publish_monitoring: bool = False) -> StackPlan:
    """Every container of the stack, host by host; ConfigError if Docker cannot run it."""
    layout = layout_for(topology)
    planner = _Planner(topology, layout)
    prometheus = topology.instances("prometheus")
    hosts = []
    for host in topology.hosts:
        specs = []
        for svc in host.services:
            build = getattr(planner, svc.name)
            specs.append(build(svc))
        if prometheus and prometheus[0].host == host.name:
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
                     publish_monitoring=publish_monitoring)


def _with_ports(spec: ContainerSpec, address: str) -> ContainerSpec:
    return replace(spec, ports=(PublishedPort(internal=spec.port, external=spec.port,
                                              ip=address),))
