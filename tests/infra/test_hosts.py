"""What a deployed host must look like from the inside."""

from __future__ import annotations

import json
import shlex

import pytest

from infra.catalog import SERVICE_KINDS

SUPERVISORCTL = "/usr/bin/supervisorctl"


def services(hv) -> list[str]:
    return list(hv["cp_services"])


def ctl(hv, *args: str) -> str:
    conf = f"{hv['cp_host_dir']}/supervisor/supervisord.conf"
    return " ".join(shlex.quote(a) for a in (SUPERVISORCTL, "-c", conf, *args))


def test_packages_installed(host, hv):
    for svc in services(hv):
        for package in SERVICE_KINDS[svc].packages:
            assert host.package(package).is_installed, f"{svc} needs {package}"
    assert host.package("supervisor").is_installed


def test_each_service_runs_as_its_own_non_root_user(host, hv):
    for svc in services(hv):
        out = host.check_output(ctl(hv, "pid", svc))
        assert out.strip().isdigit() and int(out) > 0, f"{svc} is not running: {out}"
        user = host.check_output(f"ps -o user= -p {int(out)}").strip()
        expected = SERVICE_KINDS[svc].user
        # ps truncates user names longer than 8 characters to 7 + '+'.
        assert user == expected or (user.endswith("+") and expected.startswith(user[:-1])), (
            f"{svc} runs as {user}, not {expected}")
        assert user != "root"


def test_listeners_bound_to_the_host_address_only(host, hv):
    for svc in services(hv):
        # A service with a metrics listener of its own (the app's Gunicorn master)
        # binds that one to the host address too.
        ports = [hv[f"{svc}_port"], *([hv[f"{svc}_metrics_port"]]
                                      if f"{svc}_metrics_port" in hv else [])]
        for port in ports:
            assert host.socket(f"tcp://{hv['cp_address']}:{port}").is_listening, (svc, port)
            assert not host.socket(f"tcp://0.0.0.0:{port}").is_listening, (svc, port)
            assert not host.socket(f"tcp://:::{port}").is_listening, (svc, port)


def cpu_set(cpu_list: str) -> set[int]:
    """'0-2,5' (the kernel's and taskset's list format) -> {0, 1, 2, 5}."""
    cpus: set[int] = set()
    for part in cpu_list.strip().split(","):
        low, _, high = part.partition("-")
        cpus.update(range(int(low), int(high or low) + 1))
    return cpus


def test_every_service_may_run_on_every_cpu(host, hv):
    """Mitogen pins what it starts to one core (2-CPU machine): the stack must not be.

    Before the supervisor role started supervisord through taskset, every process of
    the stack inherited that pin and the benchmark found the machine a third idle.
    """
    online = cpu_set(host.file("/sys/devices/system/cpu/online").content_string)
    supervisord = host.check_output(ctl(hv, "pid")).strip()
    for name, pid in [("supervisord", supervisord)] + [
            (svc, host.check_output(ctl(hv, "pid", svc)).strip()) for svc in services(hv)]:
        listed = host.check_output(f"taskset --cpu-list --pid {int(pid)}").rsplit(":", 1)[1]
        assert cpu_set(listed) == online, f"{name} (pid {pid}) may only use CPUs {listed}"


def test_supervisor_restarts_crashed_services(host, hv):
    for svc in services(hv):
        conf = host.file(f"{hv['cp_host_dir']}/supervisor/conf.d/{svc}.conf")
        assert conf.exists and conf.user == "root" and conf.mode == 0o644
        assert conf.contains("^autorestart=true$")
        assert conf.contains(f"^user={SERVICE_KINDS[svc].user}$")


# (service, path under the host dir, owner, mode): files that hold secrets.
SECRET_FILES = [
    ("redis", "redis/redis.conf", "cp-redis", 0o600),
    ("app", "app/config.json", "cp-app", 0o600),
    ("pgbouncer", "pgbouncer/userlist.txt", "cp-pgbouncer", 0o600),
]


@pytest.mark.parametrize(("svc", "path", "owner", "mode"), SECRET_FILES)
def test_secret_bearing_config_files(host, hv, svc, path, owner, mode):
    if svc not in services(hv):
        pytest.skip(f"{svc} does not run on this host")
    f = host.file(f"{hv['cp_host_dir']}/{path}")
    assert f.exists, path
    assert f.user == owner
    assert f.mode == mode, oct(f.mode)


def test_no_secret_in_a_world_readable_file(host, hv):
    # The controller keeps the secrets (0700 dir, 0600 files); a host holds them only
    # in files its service user (or root) can read. On a remote host the controller's
    # directory does not exist, and the value scan below runs on the controller's copy.
    secrets_dir = hv["cp_secrets_dir"]
    if not host.file(secrets_dir).exists:
        pytest.skip("secrets live on the controller, not on this host")
    # Directories (the secrets' and tls/ for the CA and host keys) 0700, files 0600.
    listing = host.check_output(f"find {secrets_dir} -printf '%m %u %y %p\\n'")
    for line in listing.splitlines():
        mode, owner, kind, name = line.split(" ", 3)
        assert (mode, owner) == ("700" if kind == "d" else "600", "root"), line
    # Certificates are public (hosts keep theirs world-readable); everything else is not.
    script = (f"find {shlex.quote(hv['cp_host_dir'])} -type f -perm -o+r -size -1M -print0 | "
              "xargs -0 -r grep -l -F -f <(find " + secrets_dir + " -type f ! -name '*.crt' "
              "-exec sh -c 'cat \"$1\"; echo' _ {} \\;) || true")
    leaks = host.run("bash -c " + shlex.quote(script))
    assert leaks.stdout.strip() == "", f"secrets in world-readable files: {leaks.stdout}"


def test_postgresql_rejects_a_wrong_password(host, hv):
    if "postgresql" not in services(hv):
        pytest.skip("no postgresql here")
    r = host.run(f"PGPASSWORD=wrong PGCONNECT_TIMEOUT=3 psql -h {hv['postgresql_address']} "
                 f"-p {hv['postgresql_port']} -U civicpulse -d postgres -c 'select 1'")
    assert r.rc != 0 and "password authentication failed" in r.stderr


def test_pgbouncer_rejects_a_wrong_password(host, hv):
    if "pgbouncer" not in services(hv):
        pytest.skip("no pgbouncer here")
    db = hv["cp_sizing"]["postgresql"]["database"]
    r = host.run(f"PGPASSWORD=wrong PGCONNECT_TIMEOUT=3 psql -h {hv['pgbouncer_address']} "
                 f"-p {hv['pgbouncer_port']} -U civicpulse -d {db} -c 'select 1'")
    # PgBouncer words it "SASL authentication failed" (SCRAM through auth_query).
    assert r.rc != 0 and ("password authentication failed" in r.stderr
                          or "SASL authentication failed" in r.stderr), r.stderr


def test_redis_refuses_unauthenticated_commands(host, hv):
    if "redis" not in services(hv):
        pytest.skip("no redis here")
    r = host.run(f"redis-cli -h {hv['redis_address']} -p {hv['redis_port']} SET probe 1")
    assert "NOAUTH" in r.stdout + r.stderr


def test_nginx_sends_security_headers_and_limits_bodies(host, hv):
    if "nginx" not in services(hv):
        pytest.skip("no nginx here")
    base = f"http://{hv['nginx_address']}:{hv['nginx_port']}"
    headers = host.check_output(f"curl -s -D - -o /dev/null {base}/civicpulse/health/").lower()
    for name in ("x-content-type-options: nosniff", "x-frame-options: deny",
                 "referrer-policy: no-referrer", "content-security-policy:"):
        assert name in headers, name
    assert "server: nginx/" not in headers  # no version disclosed
    big = hv["nginx_client_max_body_size_kb"] * 1024 + 1
    code = host.check_output(
        f"head -c {big} /dev/zero | curl -s -o /dev/null -w '%{{http_code}}' "
        f"-H 'Content-Type: application/json' --data-binary @- {base}/api/users/")
    assert code == "413"


def test_prometheus_has_every_target_up_and_rules_loaded(host, hv):
    if "prometheus" not in services(hv):
        pytest.skip("no prometheus here")
    base = f"http://{hv['prometheus_address']}:{hv['prometheus_port']}"
    targets = json.loads(host.check_output(f"curl -sf {base}/api/v1/targets?state=active"))
    active = targets["data"]["activeTargets"]
    assert active, "no scrape targets"
    down = [(t["labels"].get("job"), t["scrapeUrl"], t["lastError"]) for t in active
            if t["health"] != "up"]
    assert not down
    rules = json.loads(host.check_output(f"curl -sf {base}/api/v1/rules"))
    names = {r["name"] for g in rules["data"]["groups"] for r in g["rules"]}
    assert "Watchdog" in names and len(names) > 20


def test_alertmanager_has_the_gameday_webhook_receiver(host, hv):
    if "alertmanager" not in services(hv):
        pytest.skip("no alertmanager here")
    base = f"http://{hv['alertmanager_address']}:{hv['alertmanager_port']}"
    status = json.loads(host.check_output(f"curl -sf {base}/api/v2/status"))
    assert f"http://{hv['cp_webhook']}/alerts" in status["config"]["original"]


def test_the_webhook_receiver_listens_so_notifications_never_fail(host, hv):
    if "alertmanager" not in services(hv):
        pytest.skip("no alertmanager here")
    address, port = hv["cp_webhook"].rsplit(":", 1)
    assert host.socket(f"tcp://{address}:{port}").is_listening
    assert not host.socket(f"tcp://0.0.0.0:{port}").is_listening
    pid = int(host.check_output(ctl(hv, "pid", "notification_log")))
    user = host.check_output(f"ps -o user= -p {pid}").strip()
    assert user != "root" and SERVICE_KINDS["alertmanager"].user.startswith(user.rstrip("+"))
    # The log itself appears with the first notification (after group_wait).
    logs = host.file(hv["alertmanager_notification_log"].rsplit("/", 1)[0])
    assert logs.is_directory and logs.user == SERVICE_KINDS["alertmanager"].user
    assert logs.mode & 0o007 == 0
    assert host.run(f"curl -sf http://{hv['cp_webhook']}/-/healthy").rc == 0


def _pgbackrest(hv, *args: str) -> str:
    """A pgBackRest command on the repository host, as its owner, with its config."""
    conf = f"{hv['cp_host_dir']}/{hv['cp_backup']['config']}"
    return " ".join(shlex.quote(a) for a in (
        "/usr/sbin/runuser", "-u", hv["cp_users"]["pgbackrest"], "--", "/usr/bin/pgbackrest",
        f"--config={conf}", f"--stanza={hv['cp_backup']['stanza']}", *args))


def test_pgbackrest_keys_belong_to_their_server_alone(host, hv):
    wanted = {"pgbackrest", "pgbackrest_pg"} & set(services(hv))
    if not wanted:
        pytest.skip("no pgBackRest server on this host")
    owner = SERVICE_KINDS[wanted.pop()].user
    tls = f"{hv['cp_host_dir']}/pgbackrest/tls"
    key = host.file(f"{tls}/host.key")
    assert key.user == owner and key.mode == 0o600
    conf = host.file(f"{hv['cp_host_dir']}/{hv['cp_backup']['config']}")
    assert conf.user == "root" and conf.group == owner and conf.mode == 0o640


def test_the_repository_holds_a_full_backup_and_archiving_works(host, hv):
    if "pgbackrest" not in services(hv):
        pytest.skip("not the backup repository's host")
    info = json.loads(host.check_output(_pgbackrest(hv, "info", "--output=json")))
    assert info[0]["status"]["code"] == 0, info[0]["status"]
    assert any(b["type"] == "full" for b in info[0]["backup"])
    # A WAL switch on the database, archived and found in the repository, end to end.
    assert host.run(_pgbackrest(hv, "check")).rc == 0


def test_the_repository_is_on_a_volume_of_its_own(host, hv):
    if "pgbackrest" not in services(hv) or not hv["cp_sizing"]["pgbackrest"]["repo_volume_mb"]:
        pytest.skip("no repository volume on this host")
    volume = f"{hv['cp_host_dir']}/pgbackrest/volume"
    assert host.mount_point(volume).exists
    assert host.mount_point(volume).filesystem == "ext4"
