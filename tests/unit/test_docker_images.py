"""The docker target's images and their build contexts (pure: no engine, no pip)."""

from __future__ import annotations

from pathlib import Path

from infra.catalog import SERVICE_KINDS
from infra.docker import build_contexts
from infra.docker.layout import layout_for
from infra.docker.programs import supervised_program
from infra.docker.render import DockerContext
from infra.docker.services import plan
from tests.stacks import docker_lab


def test_every_service_user_has_its_own_fixed_uid():
    uid_of: dict[str, int] = {}
    for kind in SERVICE_KINDS.values():
        assert kind.docker_uid >= 10000, kind.name
        # Kinds that share a user (pgBackRest on the database host runs as the
        # cluster's owner) share its uid.
        assert uid_of.setdefault(kind.user, kind.docker_uid) == kind.docker_uid, kind.name
    assert len(set(uid_of.values())) == len(uid_of)


def test_images_build_from_their_parents_first():
    images = plan(docker_lab()).images
    order = list(images)
    for key, spec in images.items():
        assert all(order.index(parent) < order.index(key) for parent in spec.after), key
    assert order[0] == "runtime" and images["app"].after == ("app-deps",)


def test_contexts_carry_this_machines_apt_only_on_bookworm(tmp_path: Path):
    topology = docker_lab()
    apt = tmp_path / "apt"
    (apt / "sources.list.d").mkdir(parents=True)
    (apt / "sources.list.d" / "debian.sources").write_text("Types: deb\n")
    (apt / "apt.conf.d").mkdir()
    (apt / "apt.conf.d" / "99proxy").write_text('Acquire::http::Proxy "x";\n')
    (apt / "preferences").write_text("not copied\n")
    images = plan(topology).images
    wheels: list[tuple[str, ...]] = []

    def fake_wheels(requirements: tuple[str, ...], dest: Path) -> None:
        wheels.append(requirements)
        dest.mkdir(parents=True, exist_ok=True)

    monkey_root = tmp_path / "state"
    object.__setattr__(topology, "state_dir", monkey_root)
    found = build_contexts.prepare(topology, images, wheels=fake_wheels, apt=apt, bookworm=True)
    host_apt = found["runtime"] / "host-apt"
    assert sorted(p.name for p in host_apt.iterdir()) == ["apt.conf.d", "sources.list.d"]
    assert (found["runtime"] / "policy-rc.d").read_text().rstrip().endswith("exit 101")
    assert any("gunicorn>=22" in r for r in wheels) and len(wheels) == 2
    before = build_contexts.digests(images, found)
    build_contexts.prepare(topology, images, wheels=fake_wheels, apt=apt, bookworm=False)
    assert list(host_apt.iterdir()) == []  # another release: the image's own sources
    after = build_contexts.digests(images, found)
    # The runtime changed, so did everything built on it (the app through app-deps).
    assert all(before[k] != after[k] for k in images)


def test_host_release_is_read_from_os_release(tmp_path: Path):
    release = tmp_path / "os-release"
    release.write_text('ID=debian\nVERSION_CODENAME=bookworm\n')
    assert build_contexts.host_runs_bookworm(release)
    release.write_text('ID=ubuntu\nVERSION_CODENAME=noble\n')
    assert not build_contexts.host_runs_bookworm(release)
    assert not build_contexts.host_runs_bookworm(tmp_path / "missing")


def test_supervised_programs_come_from_the_roles_with_their_types():
    topology = docker_lab()
    ctx = DockerContext(topology, layout_for(topology))
    app = supervised_program(ctx, topology.instances("app")[0])
    assert app.argv[0] == "/var/lib/civicpulse/app/venv/bin/gunicorn"
    assert app.environment["CIVICPULSE_CONFIG"] == "/var/lib/civicpulse/app/config.json"
    pager = supervised_program(ctx, topology.one("alertmanager"), name="notification_log")
    assert pager.argv[1].endswith("/notification_log.py")
    assert "--listen" in pager.argv and "127.0.0.1:9099" in pager.argv
