"""The stack's Pulumi workspace: an inline program, a `file://<state_dir>/pulumi`
backend (no Pulumi Cloud login) and the passphrase secrets provider with a generated
passphrase kept next to the stack's other secrets."""

from __future__ import annotations

import json
import os
import secrets as pysecrets
from dataclasses import dataclass
from typing import Any

from infra.paths import pulumi_dir, pulumi_home, secrets_dir
from infra.topology import Topology

PROJECT = "civicpulse"
PASSPHRASE_FILE = "pulumi_passphrase"
#: Pulumi plugins the program needs, with the versions of the installed SDKs.
PLUGIN_PACKAGES = ("pulumi_docker", "pulumi_random")


def ensure_passphrase(topology: Topology) -> str:
    """The passphrase of the stack's Pulumi secrets: generated once, 0600, then reused."""
    directory = secrets_dir(topology)
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    path = directory / PASSPHRASE_FILE
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(pysecrets.token_urlsafe(32))
    return path.read_text().strip()


def plugin_versions() -> dict[str, str]:
    """Provider plugins to install: the versions the installed SDKs were generated for.

    An inline program gives the CLI no requirements file to read them from.
    """
    import importlib.resources

    versions = {}
    for package in PLUGIN_PACKAGES:
        meta = json.loads(importlib.resources.files(package).joinpath("pulumi-plugin.json")
                          .read_text())
        versions[meta["name"]] = "v" + meta["version"]
    return versions


@dataclass(frozen=True)
class Workspace:
    project_settings: Any
    env_vars: dict[str, str]
    backend_url: str


def workspace_settings(topology: Topology) -> Workspace:
    """Project settings and environment of the stack's Automation API workspace."""
    from pulumi import automation as auto

    backend = pulumi_dir(topology)
    backend.mkdir(parents=True, exist_ok=True)
    os.chmod(backend, 0o700)
    url = f"file://{backend}"
    settings = auto.ProjectSettings(name=PROJECT, runtime="python",
                                    backend=auto.ProjectBackend(url=url))
    env = {"PULUMI_CONFIG_PASSPHRASE": ensure_passphrase(topology),
           "PULUMI_BACKEND_URL": url,
           "PULUMI_SKIP_UPDATE_CHECK": "true",
           "PULUMI_HOME": str(pulumi_home(topology))}
    return Workspace(project_settings=settings, env_vars=env, backend_url=url)


def pulumi_stack(topology: Topology, publish_monitoring: bool, create: bool = True) -> Any:
    from pulumi import automation as auto

    from infra.docker.program import define_stack

    ws = workspace_settings(topology)
    opts = auto.LocalWorkspaceOptions(project_settings=ws.project_settings,
                                      env_vars=ws.env_vars, secrets_provider="passphrase",
                                      work_dir=str(pulumi_dir(topology)),
                                      pulumi_home=ws.env_vars["PULUMI_HOME"])

    def program() -> None:
        define_stack(topology, publish_monitoring=publish_monitoring)

    if create:
        stack = auto.create_or_select_stack(stack_name=topology.stack, project_name=PROJECT,
                                            program=program, opts=opts)
    else:
        stack = auto.select_stack(stack_name=topology.stack, project_name=PROJECT,
                                  program=program, opts=opts)
    stack.set_config("publish_monitoring",
                     auto.ConfigValue(value="true" if publish_monitoring else "false"))
    return stack
