"""What each container runs: the role's supervised program, rendered for Docker.

On the local target every service is a supervisord program declared by its role
(`ansible.builtin.import_role: supervised` with `supervised_command`, `_user`,
`_directory`, `_environment`, `_stopsignal`, `_stopwaitsecs`). The docker target's
images carry the same Debian packages, so a container runs that same command line,
read from the role's tasks and rendered with the container's variables
(`infra.docker.render.DockerContext`): one copy of every command line.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import Any

import jinja2
import yaml

from infra.ansible_template import ansible_environment
from infra.docker.render import ROLES_DIR, DockerContext, RenderError
from infra.topology import Service

SUPERVISED_DEFAULTS = ROLES_DIR / "supervised" / "defaults" / "main.yml"
#: Services run by a role named otherwise.
ROLES = {"node_exporter": "exporters", "postgres_exporter": "exporters",
         "pgbouncer_exporter": "exporters", "redis_exporter": "exporters",
         "nginx_exporter": "exporters"}


@dataclass(frozen=True)
class Program:
    argv: tuple[str, ...]
    user: str
    directory: str
    environment: dict[str, str] = field(default_factory=dict)
    #: Docker's form: SIGTERM, SIGINT, SIGQUIT.
    stop_signal: str = "SIGTERM"
    stop_timeout_s: int = 20


def role_of(service: str) -> str:
    return ROLES.get(service, service)


def _supervised_task(role: str, service: str) -> tuple[dict[str, Any], str | None]:
    """The task's vars that run `service` under supervision, and its loop variable."""
    path = ROLES_DIR / role / "tasks" / "main.yml"
    tasks = yaml.safe_load(path.read_text(encoding="utf-8")) or []
    for task in tasks:
        if not isinstance(task, dict):
            continue
        target = (task.get("ansible.builtin.import_role")
                  or task.get("ansible.builtin.include_role") or {})
        variables = task.get("vars") or {}
        if target.get("name") != "supervised":
            continue
        loop_var = (task.get("loop_control") or {}).get("loop_var")
        if variables.get("supervised_name") == service or loop_var:
            return variables, loop_var
    raise RenderError(f"{path}: no task runs {service} through the supervised role")


def supervised_program(ctx: DockerContext, svc: Service, name: str | None = None) -> Program:
    """The service's program as its role declares it, with the container's variables.

    `name`: another program of the service's role (the notification log of the
    alertmanager role).
    """
    role = role_of(svc.name)
    name = name or svc.name
    variables, loop_var = _supervised_task(role, name)
    context = ctx.for_host(svc.host, role)
    if loop_var:
        context[loop_var] = name
    defaults = yaml.safe_load(SUPERVISED_DEFAULTS.read_text(encoding="utf-8")) or {}
    env = ansible_environment({}, ROLES_DIR / role)

    def lookup(plugin: str, name: str, default: Any = None, **_options: Any) -> Any:
        # Only what the roles' program declarations use: a variable by computed name.
        if plugin not in ("ansible.builtin.vars", "vars"):
            raise jinja2.TemplateError(f"lookup({plugin!r}) in a supervised program of "
                                       f"{role}: the docker target resolves only vars")
        if name in context:
            return context[name]
        if default is not None:
            return default
        raise jinja2.UndefinedError(f"{name} is undefined")

    env.globals["lookup"] = lookup

    def templated(raw: Any) -> Any:
        # Ansible templates a value until no template is left, inside dicts and lists too.
        if isinstance(raw, dict):
            return {k: templated(v) for k, v in raw.items()}
        if isinstance(raw, list):
            return [templated(v) for v in raw]
        if not isinstance(raw, str) or "{{" not in raw:
            return raw
        stripped = raw.strip()
        if stripped.startswith("{{") and stripped.endswith("}}") and stripped.count("{{") == 1:
            # A bare "{{ expr }}" keeps its type (a dict stays a dict), as in Ansible.
            return templated(env.compile_expression(stripped[2:-2].strip())(**context))
        return templated(env.from_string(raw).render(**context))

    def value(key: str) -> Any:
        try:
            return templated(variables.get(key, defaults.get(key)))
        except jinja2.TemplateError as exc:
            raise RenderError(f"{ROLES_DIR / role}/tasks/main.yml: {key} of {svc.name} on "
                              f"{svc.host}: {exc}") from None

    environment = value("supervised_environment") or {}
    return Program(
        argv=tuple(shlex.split(str(value("supervised_command")))),
        user=str(value("supervised_user")),
        directory=str(value("supervised_directory")),
        environment={str(k): str(v) for k, v in dict(environment).items()},
        stop_signal="SIG" + str(value("supervised_stopsignal")).removeprefix("SIG"),
        stop_timeout_s=int(value("supervised_stopwaitsecs")))
