"""The files each container gets: rendered role templates, and the few that no
template covers (PostgreSQL's first-start SQL, the docker network's pg_hba line,
secrets, static and provisioning files), each saying which role task it stands in for.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

from infra.docker.render import ROLES_DIR, DockerContext, RenderError
from infra.docker.specs import FileSpec
from infra.topology import Service

#: Role templates and where each one goes in the container, as the role's template
#: tasks name the destination (rendered with the container's variables). A test
#: checks that every template of these roles is listed, so none is silently skipped.
ROLE_FILES: dict[str, dict[str, str]] = {
    "nginx": {"nginx.conf.j2": "{{ nginx_dir }}/nginx.conf"},
    "app": {"config.json.j2": "{{ app_dir }}/config.json"},
    "postgresql": {"postmaster.conf.j2": "{{ postgresql_conf_dir }}/postmaster.conf",
                   "runtime.conf.j2": "{{ postgresql_conf_dir }}/runtime.conf",
                   "pg_hba.conf.j2": "{{ postgresql_conf_dir }}/pg_hba.conf",
                   "pg_ident.conf.j2": "{{ postgresql_conf_dir }}/pg_ident.conf"},
    "pgbouncer": {"pgbouncer.ini.j2": "{{ pgbouncer_dir }}/pgbouncer.ini",
                  "listen.ini.j2": "{{ pgbouncer_dir }}/listen.ini",
                  "userlist.txt.j2": "{{ pgbouncer_dir }}/userlist.txt"},
    "redis": {"redis.conf.j2": "{{ redis_dir }}/redis.conf"},
}


def role_files(ctx: DockerContext, svc: Service, owner: str = "0", group: str = "0"
               ) -> list[FileSpec]:
    files = []
    for template, dest in ROLE_FILES[svc.name].items():
        rendered = ctx.render(ROLES_DIR / svc.name / "templates" / template, svc.host,
                              role=svc.name)
        path = ctx.render_string(dest, svc.host, svc.name)
        files.append(FileSpec.from_rendered(path, rendered, owner, group))
    return files


def postgresql_includes(ctx: DockerContext, host: str) -> str:
    """The block the role's blockinfile task appends to the cluster's postgresql.conf."""
    path = ROLES_DIR / "postgresql" / "tasks" / "configure.yml"
    tasks = yaml.safe_load(path.read_text(encoding="utf-8")) or []
    for task in tasks:
        block = (task.get("ansible.builtin.blockinfile") or {}) if isinstance(task, dict) else {}
        if str(block.get("path", "")).endswith("/postgresql.conf"):
            marker = str(block.get("marker", "# {mark} ANSIBLE MANAGED BLOCK"))
            body = ctx.render_string(str(block["block"]), host, "postgresql")
            return (f"{marker.replace('{mark}', 'BEGIN')}\n{body.rstrip()}\n"
                    f"{marker.replace('{mark}', 'END')}\n")
    raise RenderError(f"{path}: no blockinfile task writes postgresql.conf")


def pg_hba_for_docker(spec: FileSpec, subnet: str) -> FileSpec:
    """pg_hba.conf plus one line: clients on the stack network (the role allows loopback).

    On the local target every client connects from 127.0.0.1; in Docker they come
    from their host's address on the stack network.
    """
    line = (f"# docker target: every host of the stack connects from {subnet}\n"
            f"host  all  all  {subnet}  scram-sha-256\n")

    def produce(values: Mapping[str, str]) -> str:
        text = spec.produce(values)
        return text if subnet in text else text.rstrip("\n") + "\n" + line

    return FileSpec(path=spec.path, source=spec.source + " (+ docker network line)",
                    secrets=spec.secrets, produce=produce, owner=spec.owner,
                    group=spec.group, mode=spec.mode)


def sql_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def get_auth_definition() -> dict[str, Any]:
    """pgbouncer.get_auth's result type and body, read from the postgresql role's tasks."""
    path = ROLES_DIR / "postgresql" / "tasks" / "database.yml"
    tasks = yaml.safe_load(path.read_text(encoding="utf-8")) or []
    for task in tasks:
        found = (task.get("vars") or {}) if isinstance(task, dict) else {}
        if "postgresql_get_auth_body" in found:
            return found
    raise RenderError(f"{path}: no task defines postgresql_get_auth_body (the docker target "
                      "creates pgbouncer.get_auth from it)")


def initdb_sql(pg: Mapping[str, Any], path: str, owner: str) -> FileSpec:
    """First-start SQL: what the postgresql role's tasks/database.yml does with Ansible.

    infra/docker/files/postgresql-first-start.sh runs it once, on an empty data volume,
    as the superuser: roles with their passwords, the database, and the SECURITY
    DEFINER lookup PgBouncer's auth_query calls.
    """
    auth = get_auth_definition()
    roles = [(pg["postgresql_app_role"], pg["postgresql_app_secret"]),
             (pg["postgresql_pgbouncer_auth_role"], pg["postgresql_pgbouncer_auth_secret"]),
             (pg["postgresql_monitoring_role"], pg["postgresql_monitoring_secret"])]
    db = pg["postgresql_database"]
    auth_role = pg["postgresql_pgbouncer_auth_role"]

    def produce(values: Mapping[str, str]) -> str:
        # The header still names services.py, where this code used to live: a changed text
        # would make the next deploy replace the PostgreSQL container for a comment.
        lines = ["-- Generated by infra/docker/services.py: the docker target's counterpart "
                 "of", "-- playbooks/roles/postgresql/tasks/database.yml. Runs once, on an "
                 "empty volume.", "\\set ON_ERROR_STOP on"]
        for role, secret in roles:
            lines.append(f'CREATE ROLE "{role}" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE '
                         f"NOREPLICATION NOBYPASSRLS PASSWORD {sql_literal(values[secret])};")
        lines += [
            f'GRANT pg_monitor TO "{pg["postgresql_monitoring_role"]}";',
            f"CREATE DATABASE \"{db}\" OWNER \"{pg['postgresql_app_role']}\" ENCODING 'UTF8';",
            f'\\connect "{db}"',
            f'CREATE SCHEMA pgbouncer AUTHORIZATION "{pg["postgresql_superuser"]}";',
            f'GRANT USAGE ON SCHEMA pgbouncer TO "{auth_role}";',
            "CREATE FUNCTION pgbouncer.get_auth(username text)",
            f"RETURNS {auth['postgresql_get_auth_result']}",
            "LANGUAGE sql STABLE SECURITY DEFINER",
            "SET search_path = pg_catalog, pg_temp",
            f"AS $fn${auth['postgresql_get_auth_body']}$fn$;",
            "REVOKE EXECUTE ON FUNCTION pgbouncer.get_auth(text) FROM PUBLIC;",
            f'GRANT EXECUTE ON FUNCTION pgbouncer.get_auth(text) TO "{auth_role}";',
        ]
        return "\n".join(lines) + "\n"

    secrets = tuple(secret for _, secret in roles)
    return FileSpec(path=path, source="generated (postgresql/tasks/database.yml)",
                    secrets=secrets, produce=produce, owner=owner, group=owner, mode="0400")


def secret_file(path: str, name: str, owner: str) -> FileSpec:
    return FileSpec(path=path, source=f"secret {name}", secrets=(name,),
                    produce=lambda values: values[name], owner=owner, group=owner,
                    mode="0400")


def static_file(path: str, text: str, source: str, owner: str = "0", mode: str = "0644"
                ) -> FileSpec:
    return FileSpec(path=path, source=source, secrets=(), produce=lambda _values: text,
                    owner=owner, group=owner, mode=mode)


def dashboard_provider_path(files: list[FileSpec]) -> str | None:
    """`options.path` of the first file-type dashboard provider among the provisioning files."""
    for item in files:
        if "/provisioning/dashboards/" not in item.path or item.secrets:
            continue
        if not item.path.endswith((".yml", ".yaml")):
            continue
        try:
            doc = yaml.safe_load(item.text()) or {}
        except yaml.YAMLError:
            continue
        for provider in doc.get("providers") or []:
            path = (provider.get("options") or {}).get("path")
            if path:
                return str(path)
    return None
