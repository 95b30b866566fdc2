"""The docker target renders the Ansible role templates itself: same files, Docker addresses."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from infra.docker.container_files import ROLE_FILES
from infra.docker.layout import layout_for
from infra.docker.render import (
    ROLES_DIR,
    DockerContext,
    RenderError,
    render_text,
    role_variables,
)
from infra.docker.services import plan
from infra.topology import load_stack, stack_path
from infra.yaml_source import ConfigError
from tests.stacks import docker_lab, without_backups

LAB = without_backups(yaml.safe_load(stack_path("lab").read_text()))
SECRETS = {name: f"value-of-{name}" for name in (
    "postgres_superuser", "app_db", "pgbouncer_auth", "pgbouncer_stats", "monitoring_db",
    "redis", "django_secret_key", "grafana_admin")}


@pytest.fixture(scope="module")
def lab_plan():
    return plan(docker_lab())


def file_text(stack_plan, host: str, service: str, suffix: str) -> str:
    spec = stack_plan.container(host, service)
    found = [f for f in spec.files if f.path.endswith(suffix)]
    assert len(found) == 1, [f.path for f in spec.files]
    return found[0].text(SECRETS)


def test_every_role_template_is_rendered_for_docker():
    # A template added to a role must be placed in the container (or this fails).
    for role, files in ROLE_FILES.items():
        on_disk = {p.name for p in (ROLES_DIR / role / "templates").glob("*.j2")}
        assert on_disk == set(files), f"{role}: templates {on_disk} vs mapped {set(files)}"


def test_services_bind_everywhere_in_their_namespace_and_clients_use_aliases(lab_plan):
    nginx = file_text(lab_plan, "edge", "nginx", "nginx.conf")
    assert "listen 0.0.0.0:8080 default_server" in nginx
    assert "server app1:8000 " in nginx and "server app2:8000 " in nginx
    assert "127.0.10." not in nginx

    config = json.loads(file_text(lab_plan, "app1", "app", "config.json"))
    assert config["database"]["host"] == "pool" and config["database"]["port"] == 6432
    assert config["redis"]["url"] == "redis://:value-of-redis@cache:6379/0"
    assert config["secret_key"] == "value-of-django_secret_key"
    # nginx is reached from the Docker host on its published stack address.
    assert "127.0.10.10" in config["allowed_hosts"]
    # The Gunicorn master serves /metrics on the stack's metrics port, in its namespace.
    assert config["gunicorn"]["bind"] == "0.0.0.0:8000"
    assert config["gunicorn"]["metrics_bind"] == "0.0.0.0:8001"

    pgbouncer = file_text(lab_plan, "pool", "pgbouncer", "pgbouncer.ini")
    assert "civicpulse = host=db port=5432 dbname=civicpulse" in pgbouncer
    assert "listen_addr = 0.0.0.0" in file_text(lab_plan, "pool", "pgbouncer", "listen.ini")
    assert file_text(lab_plan, "pool", "pgbouncer", "userlist.txt") == (
        '"pgbouncer_auth" "value-of-pgbouncer_auth"\n'
        '"pgbouncer_stats" "value-of-pgbouncer_stats"\n')

    redis = file_text(lab_plan, "cache", "redis", "redis.conf")
    assert "bind 0.0.0.0\n" in redis and "requirepass value-of-redis\n" in redis
    assert "dir /var/lib/civicpulse/redis\n" in redis

    postmaster = file_text(lab_plan, "db", "postgresql", "postmaster.conf")
    assert "listen_addresses = '0.0.0.0'" in postmaster
    assert "unix_socket_directories = '/var/lib/civicpulse/postgresql/run'" in postmaster
    hba = file_text(lab_plan, "db", "postgresql", "pg_hba.conf")
    assert hba.rstrip().endswith("host  all  all  172.16.10.0/24  scram-sha-256")
    # The image's service user maps to the superuser, as the local target's does.
    assert "service    cp-postgresql  postgres" in file_text(lab_plan, "db", "postgresql",
                                                               "pg_ident.conf")

    alertmanager = yaml.safe_load(file_text(lab_plan, "monitor", "alertmanager",
                                            "alertmanager.yml"))
    urls = {c["url"] for r in alertmanager["receivers"] for c in r["webhook_configs"]}
    # The notification log, in the Alertmanager host's namespace (as on the local target).
    assert urls == {"http://127.0.0.1:9099/alerts"}


def test_files_without_secrets_are_plain_and_secret_files_are_locked_down(lab_plan):
    for spec in lab_plan.containers:
        for item in spec.files:
            if item.secrets:
                assert item.mode == "0400", f"{spec.service}: {item.path}"
                assert item.owner != "0" or spec.service == "nginx", item.path
            else:
                assert "value-of-" not in item.text({}), item.path


def test_postgres_first_start_sql_mirrors_the_role(lab_plan):
    sql = file_text(lab_plan, "db", "postgresql", "first-start.sql")
    assert "CREATE ROLE \"civicpulse\" LOGIN" in sql and "'value-of-app_db'" in sql
    assert "CREATE ROLE \"pgbouncer_auth\" LOGIN" in sql
    assert "GRANT pg_monitor TO \"monitoring\";" in sql
    assert "CREATE DATABASE \"civicpulse\" OWNER \"civicpulse\"" in sql
    assert "SECURITY DEFINER" in sql and "NOT s.usesuper" in sql
    assert "REVOKE EXECUTE ON FUNCTION pgbouncer.get_auth(text) FROM PUBLIC;" in sql
    spec = lab_plan.container("db", "postgresql")
    assert spec.env["CP_PG_PWFILE"] == "/var/lib/civicpulse/postgresql/initdb.pwfile"
    assert file_text(lab_plan, "db", "postgresql", "initdb.pwfile") == (
        "value-of-postgres_superuser")
    # The role's blockinfile, appended to the cluster's postgresql.conf at first start.
    includes = file_text(lab_plan, "db", "postgresql", "first-start.conf")
    assert "include '/var/lib/civicpulse/postgresql/conf/postmaster.conf'" in includes
    assert includes.startswith("# BEGIN CivicPulse")


def test_ansible_shims(tmp_path):
    template = tmp_path / "t.j2"
    source = ("# {{ ansible_managed }}\n"
              "{{ ['a', 'b', 'a'] | unique | to_json }}\n"
              "{{ {'x': 1} | to_nice_json(indent=2) }}\n"
              "{{ lookup('ansible.builtin.file', cp_secrets_dir + '/redis') }}\n"
              "{{ 'a-b' | regex_replace('-', '_') }} "
              "{{ items | map(attribute='n') | join(',') }}\n")
    context = {"cp_secrets_dir": "/run/secrets/civicpulse", "items": [{"n": 1}, {"n": 2}]}
    text, used = render_text(source, template, context)
    assert used == ["redis"] and "\x00" in text  # the placeholder pass
    text, _ = render_text(source, template, context, secrets={"redis": "pw"})
    lines = text.splitlines()
    assert lines[0].startswith("# Managed by CivicPulse Ops (docker target)")
    assert lines[1] == '["a", "b"]'
    assert lines[2:5] == ["{", '  "x": 1', "}"]
    assert lines[5:] == ["pw", "a_b 1,2"]
    with pytest.raises(RenderError, match=r"t\.j2:1: .*undefined"):
        render_text("{{ nope }}\n", template, {})
    with pytest.raises(RenderError, match=r"t\.j2:3: .*undefined"):
        render_text("#jinja2:trim_blocks:True\nok\n{{ nope }}\n", template, {})


def test_jinja2_override_line_is_honoured(tmp_path):
    source = "#jinja2:variable_start_string:'[%', variable_end_string:'%]'\n[% x %] {{ $y }}\n"
    text, _ = render_text(source, tmp_path / "rules.yml.j2", {"x": 1})
    assert text == "1 {{ $y }}\n"


def test_role_variables_resolve_in_any_order_and_overrides_win():
    topology = docker_lab()
    ctx = DockerContext(topology, layout_for(topology)).for_host("pool")
    variables = role_variables("pgbouncer", ctx)
    assert variables.values["pgbouncer_server_address"] == "db"
    assert variables.values["pgbouncer_server_port"] == 5432  # a literal, as Ansible makes it
    # The role's own default, under the containers' state directory.
    assert variables.values["pgbouncer_dir"] == "/var/lib/civicpulse/pgbouncer"
    # Lazy like Ansible: the exporters role defines commands for exporters this host
    # does not run; they stay unresolved instead of failing.
    exporters = role_variables("exporters", DockerContext(
        topology, layout_for(topology)).for_host("pool"))
    assert "pgbouncer_exporter_command" in exporters.values
    assert "node_exporter_address" in exporters.unresolved["node_exporter_command"]


def test_layout_maps_loopback_addresses_and_rejects_the_gateway(tmp_path):
    layout = layout_for(docker_lab())
    assert layout.hosts["db"].ip == "172.16.10.32" and layout.hosts["db"].alias == "db"
    assert layout.host_of_address("127.0.10.32") is layout.hosts["db"]
    data = copy.deepcopy(LAB)
    data["hosts"]["app1"]["address"] = "127.0.10.1"
    path = tmp_path / "lab.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="app1.address 127.0.10.1 maps to 172.16.10.1, the "
                                          "gateway"):
        layout_for(load_stack(path))


def test_nginx_exporter_must_share_nginx_host(tmp_path):
    data = copy.deepcopy(LAB)
    data["hosts"]["edge"]["services"].remove("nginx_exporter")
    data["hosts"]["monitor"]["services"].append("nginx_exporter")
    path: Path = tmp_path / "lab.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="nginx_exporter on nginx's host"):
        plan(load_stack(path))


def test_exporter_command_lines_come_from_the_exporters_role(lab_plan):
    pg = lab_plan.container("db", "postgres_exporter")
    assert pg.entrypoint == (
        "/usr/bin/prometheus-postgres-exporter", "--web.listen-address=0.0.0.0:9187",
        "--extend.query-path=/var/lib/civicpulse/postgres_exporter/queries.yml")
    assert pg.env["DATA_SOURCE_URI"].startswith("db:5432/")
    assert {f.path for f in pg.files} == {"/var/lib/civicpulse/postgres_exporter/queries.yml",
                                         pg.env["DATA_SOURCE_PASS_FILE"]}
    redis = lab_plan.container("cache", "redis_exporter")
    assert "-redis.addr" in redis.entrypoint and "redis://cache:6379" in redis.entrypoint
    assert json.loads(redis.files[0].text(SECRETS)) == {"redis://cache:6379": "value-of-redis"}
    nginx = lab_plan.container("edge", "nginx_exporter")
    assert "http://127.0.10.10:8080/nginx_status" in nginx.entrypoint
    pgb = lab_plan.container("pool", "pgbouncer_exporter")
    assert pgb.entrypoint[0] == "/var/lib/civicpulse/pgbouncer_exporter/venv/bin/python"
    assert pgb.entrypoint[1] == pgb.files[0].path
    assert "argparse" in pgb.files[0].text()
    assert pgb.entrypoint[pgb.entrypoint.index("--pgbouncer") + 1] == "pool:6432"
    node = lab_plan.container("monitor", "node_exporter")
    assert node.entrypoint[:2] == ("/usr/bin/prometheus-node-exporter",
                                   "--web.listen-address=0.0.0.0:9100")
    assert "--collector.disable-defaults" in node.entrypoint


def test_grafana_is_provisioned_from_monitoring_grafana(tmp_path, monkeypatch):
    from infra.docker import services

    grafana = tmp_path / "grafana"
    (grafana / "provisioning" / "datasources").mkdir(parents=True)
    (grafana / "provisioning" / "dashboards").mkdir(parents=True)
    (grafana / "dashboards").mkdir()
    (grafana / "provisioning" / "datasources" / "prometheus.yml.j2").write_text(
        "datasources:\n  - name: Prometheus\n    type: prometheus\n"
        "    url: http://{{ cp_endpoints.prometheus[0].address }}:"
        "{{ cp_endpoints.prometheus[0].port }}\n")
    (grafana / "provisioning" / "dashboards" / "civicpulse.yml").write_text(
        "apiVersion: 1\nproviders:\n  - name: civicpulse\n    type: file\n"
        "    options:\n      path: /var/lib/grafana-dashboards\n")
    (grafana / "dashboards" / "stack.json").write_text('{"title": "Stack"}')
    monkeypatch.setattr(services, "GRAFANA_DIR", grafana)
    spec = plan(docker_lab()).container("monitor", "grafana")
    files = {f.path: f for f in spec.files}
    datasource = yaml.safe_load(files["/etc/grafana/provisioning/datasources/prometheus.yml"]
                                .text())
    assert datasource["datasources"][0]["url"] == "http://monitor:9090"
    assert "/etc/grafana/provisioning/dashboards/civicpulse.yml" in files
    assert files["/var/lib/grafana-dashboards/stack.json"].text() == '{"title": "Stack"}'
    assert files["/run/secrets/civicpulse/grafana_admin"].secrets == ("grafana_admin",)
    assert spec.env["GF_SECURITY_ADMIN_PASSWORD__FILE"] == "/run/secrets/civicpulse/grafana_admin"


def test_grafana_gets_what_the_real_provisioning_files_expect(lab_plan):
    spec = lab_plan.container("monitor", "grafana")
    files = {f.path: f.text() for f in spec.files if not f.secrets}
    datasource = files["/etc/grafana/provisioning/datasources/prometheus.yml"]
    for var in ("CP_PROMETHEUS_URL", "CP_SCRAPE_INTERVAL"):
        assert f"${{{var}}}" in datasource and var in spec.env
    assert spec.env["CP_PROMETHEUS_URL"] == "http://monitor:9090"
    assert spec.env["CP_SCRAPE_INTERVAL"] == "1s"
    provider = yaml.safe_load(files["/etc/grafana/provisioning/dashboards/civicpulse.yml"])
    path = provider["providers"][0]["options"]["path"]
    assert [p for p in files if p.startswith(path + "/") and p.endswith(".json")]
