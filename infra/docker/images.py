"""The docker target's images: every one built from the stack's Debian bookworm base.

No image is pulled but the base (stack config `docker.base_image`): each service runs
the same Debian package the local target installs (`infra.catalog`), so a container
runs the binary, paths and config files the Ansible roles give a local host.

    base ─► runtime ─┬─► <service>      service.Dockerfile, one per service kind
                     ├─► sandbox        (the runtime itself: `sleep infinity` owns a
                     │                   host's network namespace)
                     ├─► nettools       iptables, for the GameDay driver's network faults
                     └─► app-deps ─► app   the workload: app/Dockerfile on the deps image

Pure data: `image_plan(topology)` says what to build from which Dockerfile, context
and build arguments; `infra.docker.build_contexts` writes the contexts and
`infra.docker.program` declares one `docker.Image` per entry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from infra.catalog import CLIENT_PACKAGES, SERVICE_KINDS
from infra.topology import REPO_ROOT, Topology
from infra.workload import requirements

DOCKERFILES = Path(__file__).resolve().parent / "images"
RUNTIME_DOCKERFILE = DOCKERFILES / "runtime.Dockerfile"
SERVICE_DOCKERFILE = DOCKERFILES / "service.Dockerfile"
APP_DOCKERFILE = REPO_ROOT / "app" / "Dockerfile"
PGBOUNCER_EXPORTER_REQUIREMENTS = REPO_ROOT / "monitoring" / "exporters" / "requirements.txt"

#: Packages a service's image needs beyond the catalog's, and why.
EXTRA_PACKAGES: dict[str, tuple[str, ...]] = {
    # The notification log (Alertmanager's webhook receiver) is a Python script.
    "alertmanager": ("python3",),
}
NETTOOLS_PACKAGES = ("iptables",)

#: Directories a service writes, as the role's variables name them (rendered per
#: host by `infra.docker.services`): created in the image, owned by the service's
#: user, so that a named volume mounted there starts with the right owner.
WRITABLE_DIRS: dict[str, tuple[str, ...]] = {
    "nginx": ("{{ nginx_dir }}", "{{ nginx_dir }}/temp"),
    "app": ("{{ app_metrics_dir }}",),
    "postgresql": ("{{ postgresql_data_dir }}", "{{ postgresql_run_dir }}"),
    "pgbouncer": ("{{ pgbouncer_dir }}",),
    "redis": ("{{ redis_dir }}",),
    "prometheus": ("{{ prometheus_dir }}/data",),
    "alertmanager": ("{{ alertmanager_dir }}/data",
                     "{{ alertmanager_notification_log | dirname }}"),
}


@dataclass(frozen=True)
class ImageSpec:
    """One image to build."""

    key: str
    name: str
    dockerfile: Path
    #: Which build context (`infra.docker.build_contexts`) it builds in.
    context: str
    args: dict[str, str] = field(default_factory=dict)
    #: Keys of the images it builds FROM (they must exist first).
    after: tuple[str, ...] = ()
    #: Python requirements whose wheels the context must carry.
    wheels: tuple[str, ...] = ()


def image_name(topology: Topology, key: str) -> str:
    return f"civicpulse/{key.replace('_', '-')}:{topology.stack}"


def _read_requirements(path: Path) -> tuple[str, ...]:
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return tuple(line for line in lines if line)


#: Renders a Jinja expression with a service kind's role variables as its container
#: sees them (`infra.docker.services`): `resolve("nginx", "{{ nginx_dir }}")`.
Resolver = Callable[[str, str], str]


def image_plan(topology: Topology, resolve: Resolver) -> dict[str, ImageSpec]:
    """Every image of the stack, in build order."""
    runtime = image_name(topology, "runtime")
    images: dict[str, ImageSpec] = {
        "runtime": ImageSpec("runtime", runtime, RUNTIME_DOCKERFILE, "runtime",
                             args={"BASE": topology.docker.base_image,
                                   "PACKAGES": " ".join(CLIENT_PACKAGES)}),
    }
    images["sandbox"] = ImageSpec("sandbox", image_name(topology, "sandbox"),
                                  SERVICE_DOCKERFILE, "service",
                                  args=_service_args(runtime, (), "cp-sandbox", 10000),
                                  after=("runtime",))
    images["nettools"] = ImageSpec("nettools", image_name(topology, "nettools"),
                                   SERVICE_DOCKERFILE, "service",
                                   args=_service_args(runtime, NETTOOLS_PACKAGES, "cp-nettools",
                                                      10002),
                                   after=("runtime",))
    used = {s.name for s in topology.services}
    for kind in SERVICE_KINDS.values():
        if kind.name not in used:
            continue
        dirs = tuple(resolve(kind.name, d) for d in WRITABLE_DIRS.get(kind.name, ()))
        packages = (*kind.packages, *EXTRA_PACKAGES.get(kind.name, ()))
        args = _service_args(runtime, packages, kind.user, kind.docker_uid, dirs)
        if kind.name == "app":
            deps = requirements(topology)
            args.update(VENV=resolve("app", "{{ app_venv }}"), REQUIREMENTS=" ".join(deps))
            images["app-deps"] = ImageSpec("app-deps", image_name(topology, "app-deps"),
                                           SERVICE_DOCKERFILE, "app-deps", args=args,
                                           after=("runtime",), wheels=tuple(deps))
            images["app"] = ImageSpec("app", image_name(topology, "app"), APP_DOCKERFILE,
                                      "app", args={"DEPS": image_name(topology, "app-deps"),
                                                   "APP_SRC": resolve("app", "{{ app_src }}")},
                                      after=("app-deps",))
            continue
        wheels: tuple[str, ...] = ()
        if kind.name == "pgbouncer_exporter":
            wheels = _read_requirements(PGBOUNCER_EXPORTER_REQUIREMENTS)
            args.update(VENV=resolve("pgbouncer_exporter", "{{ pgbouncer_exporter_venv }}"),
                        REQUIREMENTS=" ".join(wheels))
        images[kind.name] = ImageSpec(kind.name, image_name(topology, kind.name),
                                      SERVICE_DOCKERFILE,
                                      "python" if wheels else "service", args=args,
                                      after=("runtime",), wheels=wheels)
    return images


def _service_args(runtime: str, packages: tuple[str, ...], user: str, uid: int,
                  dirs: tuple[str, ...] = ()) -> dict[str, str]:
    return {"RUNTIME": runtime, "PACKAGES": " ".join(packages) or "ca-certificates",
            "SERVICE_USER": user, "SERVICE_UID": str(uid), "DIRS": " ".join(dirs)}
