"""The environment a runbook block runs in: the stack described as shell variables.

One definition for both readers of a runbook: the GameDay runner
(`gameday.runbook_runner`) runs blocks with it, and `python -m infra.ops env` prints
it for a human on call, so both see exactly the same variables. It lives in `infra`
because it describes the stack (addresses, state paths, supervisorctl commands) and
nothing of a GameDay.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from infra.paths import secrets_dir
from infra.supervision import supervisorctl_shell
from infra.topology import REPO_ROOT, Topology, stack_path

#: The docker CLI's own settings for where the engine is and how to reach it.
DOCKER_CLIENT_ENV = ("DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_CONFIG", "DOCKER_CERT_PATH",
                     "DOCKER_TLS_VERIFY")


def runbook_env(topology: Topology, alert: str | None = None,
                labels: dict[str, str] | None = None,
                base: dict[str, str] | None = None) -> dict[str, str]:
    """What a runbook block can rely on (runbooks/README.md, "Placeholders"):

    CP_STACK (the stack's name, or its file when it is not in infra/stacks/),
    CP_ALERT_NAME and CP_ALERT_<LABEL> for each label of the alert (HOST, SERVICE,
    INSTANCE, …), CP_STATE_DIR, CP_SECRETS_DIR, CP_REPO, CP_APP_URL,
    CP_HOST_<HOST>_ADDRESS / _SUPERVISORCTL for every host, and for every service that
    runs once: CP_<SERVICE>_HOST, _ADDRESS, _PORT, _URL and _SUPERVISORCTL. `python`
    on PATH is the interpreter running the engine (the project's venv), which
    `python -m infra.ops` needs. Secrets are never put in the environment.
    """
    env = dict(base if base is not None else {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                                               "LANG": "C.UTF-8", "HOME": "/root"})
    # sys.executable unresolved: a venv's bin/python is a symlink, and resolving it
    # would lead to the base interpreter without the project's packages.
    venv_bin = str(Path(sys.executable).parent)
    env["PATH"] = venv_bin + os.pathsep + env.get("PATH", "/usr/bin:/bin")
    # Which Docker engine the docker target's stack runs on: the ops commands a
    # runbook runs must drive the same one the engine does.
    env.update({k: os.environ[k] for k in DOCKER_CLIENT_ENV if k in os.environ})
    env.update({
        "CP_STACK": stack_argument(topology),
        "CP_STATE_DIR": str(topology.state_dir),
        "CP_SECRETS_DIR": str(secrets_dir(topology)),
        "CP_REPO": str(REPO_ROOT),
        "CP_APP_URL": topology.app_url,
        "CP_ALERT_NAME": alert or "",
    })
    for key, value in (labels or {}).items():
        if key != "alertname":
            env[f"CP_ALERT_{_env_key(key)}"] = str(value)
    for host in topology.hosts:
        key = _env_key(host.name)
        env[f"CP_HOST_{key}_ADDRESS"] = host.address
        env[f"CP_HOST_{key}_SUPERVISORCTL"] = supervisorctl_shell(topology, host.name)
    for svc in topology.services:
        if len(topology.instances(svc.name)) != 1:
            continue
        key = _env_key(svc.name)
        env[f"CP_{key}_HOST"] = svc.host
        env[f"CP_{key}_ADDRESS"] = svc.address
        env[f"CP_{key}_PORT"] = str(svc.port)
        env[f"CP_{key}_URL"] = f"http://{svc.endpoint}"
        env[f"CP_{key}_SUPERVISORCTL"] = supervisorctl_shell(topology, svc.host)
    return env


def stack_argument(topology: Topology) -> str:
    """How `--stack` names this stack: by name if infra/stacks/ has it, else its file."""
    try:
        if stack_path(topology.stack).resolve() == Path(topology.source).resolve():
            return topology.stack
    except OSError:
        pass
    return str(topology.source)


def _env_key(name: str) -> str:
    return re.sub(r"[^A-Z0-9]", "_", name.upper())
