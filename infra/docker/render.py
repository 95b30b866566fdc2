"""Render the Ansible role templates for the Docker target, without Ansible.

There is one copy of every config file: the `.j2` templates the Ansible roles render
(`playbooks/roles/*/templates`, `monitoring/**`). This module renders the same files
with the Ansible-compatible renderer of `infra.ansible_template` (Ansible's settings
and filter shims: `to_json`, `to_nice_yaml`, `unique`, `regex_replace`, …), from the
same variables (`infra.inventory.stack_vars` + `host_vars` + the role's
`defaults/main.yml`), plus shims for the Ansible-only bits that depend on the host:
`lookup('file', …)`, `ansible_managed`, `inventory_hostname`/`groups`/`hostvars`.

What differs in Docker, and only that, is overridden in the context:

- **Addresses.** Every `cp_endpoints[*].address` (where clients connect) becomes
  the host's network alias, i.e. the stack's host name (`db`, `pool`, `app1`), and
  every `<service>_address` (what a service binds to) becomes `0.0.0.0`: inside its
  host's network namespace a service listens on all interfaces, and the namespace
  has only `lo` and the stack network. See `infra.docker.layout` for why a host is a
  namespace shared by its services. The exception is a service whose clients are
  outside the network (nginx: the GameDay load, probes and users on the Docker host
  reach it on its published port): its endpoint keeps the stack-config address it
  is published on, so e.g. the app's `allowed_hosts` accepts `Host: 127.0.10.10:8080`
  exactly as on the local target.
- **Paths** inside the images (`nginx_dir`, `redis_dir`, …) and the users the images
  run as: given per service by `infra.docker.services`.
- **Secrets.** `lookup('file', cp_secrets_dir + '/<name>')` reads the stack secret
  `<name>` from a mapping supplied at render time (the Pulumi program supplies the
  resolved `RandomPassword` values inside `Output.apply`, so the rendered file stays
  a Pulumi secret). A first pass with placeholders finds out which secrets a file
  holds; files that hold none are plain strings.
- **The webhook** (`cp_webhook`): the notification log runs in a container of the
  Alertmanager host, as it runs next to Alertmanager on the local target.
"""

from __future__ import annotations

import ast
import copy
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import yaml

from infra import ansible_template
from infra.ansible_template import ansible_environment
from infra.docker.layout import DockerLayout
from infra.inventory import host_vars, stack_vars
from infra.paths import NOTIFICATION_LOG
from infra.topology import REPO_ROOT, Topology

ROLES_DIR = REPO_ROOT / "playbooks" / "roles"
MONITORING_DIR = REPO_ROOT / "monitoring"
#: `cp_secrets_dir` as the templates see it in Docker: only a namespace for lookups.
SECRETS_DIR = "/run/secrets/civicpulse"
#: `cp_state_dir` / `cp_host_dir` inside every container.
CONTAINER_STATE_DIR = "/var/lib/civicpulse"

_PLACEHOLDER = "\x00cp-secret:{}\x00"


class RenderError(Exception):
    """A template could not be rendered; the message names the file and line."""


@dataclass(frozen=True)
class Rendered:
    """One rendered file: its text once the secrets it reads are supplied."""

    template: Path
    #: Names of the stack secrets the file holds (empty: the text is not secret).
    secrets: tuple[str, ...]
    _render: Callable[[Mapping[str, str]], str] = field(repr=False)

    def text(self, secret_values: Mapping[str, str] | None = None) -> str:
        values = dict(secret_values or {})
        missing = [name for name in self.secrets if name not in values]
        if missing:
            raise RenderError(f"{self.template}: needs the secrets {', '.join(missing)}")
        return self._render(values)


class _Lookups:
    """`lookup('ansible.builtin.file', path)`: stack secrets by name, other files from disk."""

    def __init__(self, secrets_dir: str, secrets: Mapping[str, str] | None,
                 search: tuple[Path, ...]) -> None:
        self.secrets_dir = secrets_dir.rstrip("/") + "/"
        self.secrets = secrets
        self.search = search
        self.used: list[str] = []

    def __call__(self, plugin: str, *terms: str, **_options: Any) -> str:
        if plugin not in ("ansible.builtin.file", "file"):
            raise jinja2.TemplateError(f"lookup({plugin!r}) has no shim for the docker target "
                                       "(only ansible.builtin.file)")
        return ",".join(self._file(str(term)) for term in terms)

    def _file(self, path: str) -> str:
        if path.startswith(self.secrets_dir):
            name = path[len(self.secrets_dir):]
            if name not in self.used:
                self.used.append(name)
            if self.secrets is None:
                return _PLACEHOLDER.format(name)
            return self.secrets[name].rstrip()
        candidates = [Path(path)] if os.path.isabs(path) else [d / path for d in self.search]
        for candidate in candidates:
            if candidate.is_file():
                # Ansible's file lookup strips trailing whitespace (rstrip=True).
                return candidate.read_text(encoding="utf-8").rstrip()
        raise jinja2.TemplateError(f"lookup('file', {path!r}): no such file")


def split_overrides(text: str, source: Path) -> tuple[str, dict[str, Any]]:
    """Strip an Ansible `#jinja2:` first line; return the text and its Jinja settings."""
    try:
        return ansible_template.split_overrides(text, source)
    except ValueError as exc:
        raise RenderError(str(exc)) from None


def render_text(source: str, path: Path, context: Mapping[str, Any],
                secrets: Mapping[str, str] | None = None,
                secrets_dir: str = SECRETS_DIR) -> tuple[str, list[str]]:
    """Render template text like `ansible.builtin.template`; returns (text, secrets read).

    With `secrets=None` every secret lookup yields a placeholder: the pass that finds
    out which secrets the file holds.
    """
    text, overrides = split_overrides(source, path)
    lookups = _Lookups(secrets_dir, secrets, (path.parent.parent / "files", REPO_ROOT))
    env = ansible_environment(overrides, path.parent)
    env.globals["lookup"] = lookups
    env.globals["query"] = lambda *a, **k: lookups(*a, **k).split(",")
    ctx = dict(context)
    ctx.setdefault("ansible_managed", f"Managed by CivicPulse Ops (docker target), rendered "
                                      f"from {repo_relative(path)}; do not edit.")
    try:
        rendered = env.from_string(text).render(**ctx)
    except jinja2.TemplateError as exc:
        where = ansible_template.error_location(exc, path, overrides)
        raise RenderError(f"{where}: {exc}") from None
    return rendered, lookups.used


def repo_relative(path: Path) -> str:
    """A path relative to the checkout when it is inside it (for messages and comments)."""
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def _literal(text: str) -> Any:
    """Ansible turns a templated string that looks like a literal into that value."""
    try:
        value = ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return text
    return value if isinstance(value, int | float | bool | list | dict) else text


def _template_value(value: Any, context: Mapping[str, Any], env: jinja2.Environment) -> Any:
    if isinstance(value, str) and ("{{" in value or "{%" in value):
        return _literal(env.from_string(value).render(**context))
    if isinstance(value, list):
        return [_template_value(v, context, env) for v in value]
    if isinstance(value, dict):
        return {k: _template_value(v, context, env) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class RoleVariables:
    """A role's `defaults/main.yml` and `vars/main.yml`, templated against a context."""

    values: dict[str, Any]
    #: Variables that could not be resolved, and why. Ansible templates variables
    #: lazily (the exporters role defines commands for exporters a host may not run),
    #: so this is an error only when something uses one of them.
    unresolved: dict[str, str]


def _load_vars(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}


def role_variables(role: str, context: Mapping[str, Any],
                   protected: frozenset[str] = frozenset()) -> RoleVariables:
    """Resolve a role's variables with Ansible's precedence, as far as the context allows.

    Defaults lose to everything in `context` (inventory variables); role vars beat the
    inventory, except for the `protected` names (the docker target's own overrides,
    which play the part of extra vars).
    """
    defaults = _load_vars(ROLES_DIR / role / "defaults" / "main.yml")
    role_vars = _load_vars(ROLES_DIR / role / "vars" / "main.yml")
    pending = {k: v for k, v in defaults.items() if k not in context}
    pending.update({k: v for k, v in role_vars.items() if k not in protected})
    env = ansible_environment({}, ROLES_DIR / role)
    resolved: dict[str, Any] = {}
    errors: dict[str, str] = {}
    base = {k: v for k, v in context.items() if k not in pending}
    # Variables may refer to each other in any order: resolve until nothing moves.
    while pending:
        progressed = False
        for key, value in list(pending.items()):
            try:
                resolved[key] = _template_value(value, {**base, **resolved}, env)
            except jinja2.UndefinedError as exc:
                errors[key] = str(exc)
                continue
            errors.pop(key, None)
            del pending[key]
            progressed = True
        if not progressed:
            break
    return RoleVariables(values=resolved, unresolved=errors)


class DockerContext:
    """The variables a template sees on one host of the stack, in Docker."""

    def __init__(self, topology: Topology, layout: DockerLayout,
                 service_vars: Mapping[str, Mapping[str, Any]] | None = None,
                 external_services: tuple[str, ...] = ()) -> None:
        self.topology = topology
        self.layout = layout
        self.service_vars = service_vars or {}
        self.external_services = external_services
        self._stack = self._stack_vars()
        self._hosts = {h.name: self._host_vars(h.name) for h in topology.hosts}
        self._protected = frozenset(k for v in self.service_vars.values() for k in v)

    def _stack_vars(self) -> dict[str, Any]:
        ctx = copy.deepcopy(stack_vars(self.topology))
        for service, instances in ctx["cp_endpoints"].items():
            if service in self.external_services:
                continue
            for endpoint in instances:
                endpoint["address"] = self.layout.hosts[endpoint["host"]].alias
        ctx.update(
            cp_target="docker",
            cp_state_dir=CONTAINER_STATE_DIR,
            cp_secrets_dir=SECRETS_DIR,
            cp_webhook=self._webhook(),
            cp_docker_network=self.layout.network,
            cp_docker_subnet=self.layout.subnet,
        )
        return ctx

    def _webhook(self) -> str:
        # The notification log runs next to Alertmanager, in the Alertmanager host's
        # network namespace (as on the local target it runs on the same host): it
        # listens and Alertmanager sends on that namespace's loopback.
        return f"127.0.0.1:{self.topology.monitoring.webhook_port}"

    def _host_vars(self, host_name: str) -> dict[str, Any]:
        host = self.topology.host(host_name)
        hv = {k: v for k, v in host_vars(self.topology, host).items()
              if not k.startswith("ansible_")}
        hv.update(cp_address=self.layout.hosts[host_name].alias,
                  cp_host_dir=CONTAINER_STATE_DIR, cp_machine_primary=True)
        if "alertmanager_notification_log" in hv:
            hv["alertmanager_notification_log"] = f"{CONTAINER_STATE_DIR}/{NOTIFICATION_LOG}"
        for svc in host.services:
            hv[f"{svc.name}_address"] = "0.0.0.0"
            hv.update(self.service_vars.get(svc.name, {}))
        return hv

    def for_host(self, host: str, role: str | None = None) -> dict[str, Any]:
        """Stack vars + host vars (+ the role's defaults and vars), with the Docker overrides."""
        groups: dict[str, list[str]] = {"all": [h.name for h in self.topology.hosts]}
        for svc in self.topology.services:
            groups.setdefault(svc.name, []).append(svc.host)
        ctx: dict[str, Any] = {**copy.deepcopy(self._stack), **copy.deepcopy(self._hosts[host])}
        ctx.update(inventory_hostname=host, groups=groups,
                   hostvars={name: {**self._stack, **hv} for name, hv in self._hosts.items()})
        if role:
            role_vars = role_variables(role, ctx, self._protected)
            ctx.update(role_vars.values)
            ctx["__unresolved__"] = role_vars.unresolved
        return ctx

    def variable(self, host: str, role: str, name: str) -> Any:
        """One variable of a role on a host; RenderError saying why if it is undefined."""
        ctx = self.for_host(host, role)
        if name in ctx:
            return ctx[name]
        why = ctx["__unresolved__"].get(name, "not defined by the role or the inventory")
        raise RenderError(f"{ROLES_DIR / role}: {name} on host {host}: {why}")

    def render_string(self, text: str, host: str, role: str | None = None) -> str:
        """A template string (e.g. a role's `dest:`) rendered for a host."""
        if "{{" not in text and "{%" not in text:
            return text
        env = ansible_environment({}, ROLES_DIR / role if role else REPO_ROOT)
        try:
            return env.from_string(text).render(**self.for_host(host, role))
        except jinja2.TemplateError as exc:
            raise RenderError(f"{text!r} on host {host} (role {role}): {exc}") from None

    def render(self, template: Path, host: str, role: str | None = None,
               extra: Mapping[str, Any] | None = None) -> Rendered:
        """Render one template for a host; secrets are supplied later, by name."""
        context = {**self.for_host(host, role), **(extra or {})}
        source = template.read_text(encoding="utf-8")
        _, used = render_text(source, template, context)

        def render_with(values: Mapping[str, str]) -> str:
            return render_text(source, template, context, secrets=values)[0]

        return Rendered(template=template, secrets=tuple(used), _render=render_with)
