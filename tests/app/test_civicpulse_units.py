"""Fast tests without services: config loading, DB settings, breaker, Gunicorn config."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from civicpulse.config import ConfigError, load_config
from civicpulse.core.circuit_breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker
from civicpulse.database import django_database
from civicpulse_stack import app_env

SECRET = "s" * 40


def write(tmp_path, data) -> dict[str, str]:
    path = tmp_path / "config.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    path.chmod(0o600)
    return {"CIVICPULSE_CONFIG": str(path)}


def minimal(**extra) -> dict:
    return {"secret_key": SECRET, "database": {"engine": "postgresql", "name": "cp", "user": "cp",
                                               "password": "from-file"}, **extra}


def test_missing_env_names_variable():
    with pytest.raises(ConfigError, match="CIVICPULSE_CONFIG"):
        load_config({})


def test_unreadable_file_named(tmp_path):
    with pytest.raises(ConfigError, match=str(tmp_path / "nope.json")):
        load_config({"CIVICPULSE_CONFIG": str(tmp_path / "nope.json")})


def test_world_readable_file_refused(tmp_path):
    env = write(tmp_path, minimal())
    (tmp_path / "config.json").chmod(0o644)
    with pytest.raises(ConfigError, match=r"config.json: .*readable or writable by others"):
        load_config(env)


def test_invalid_json_named(tmp_path):
    env = write(tmp_path, "{not json")
    with pytest.raises(ConfigError, match=rf"{tmp_path}.*not valid JSON"):
        load_config(env)


@pytest.mark.parametrize(("data", "key"), [
    ({"database": {"engine": "sqlite", "path": "x"}}, "secret_key"),
    ({"secret_key": "short", "database": {"engine": "sqlite", "path": "x"}}, "secret_key"),
    ({"secret_key": SECRET}, "database"),
    ({"secret_key": SECRET, "database": {"engine": "mysql"}}, "database.engine"),
    ({"secret_key": SECRET, "database": {"engine": "sqlite"}}, "database.path"),
    (minimal(database={"engine": "postgresql", "name": "cp", "user": "cp", "port": "5432"}),
     "database.port"),
    (minimal(database={"engine": "postgresql", "name": "cp", "user": "cp", "port": True}),
     "database.port"),
    (minimal(redis={"url": "http://x"}), "redis.url"),
    (minimal(redis={"url": "redis://x", "socket_timeout": 0}), "redis.socket_timeout"),
    (minimal(gunicorn={"workers": 0}), "gunicorn.workers"),
    (minimal(gunicorn={"worker_class": "gevent"}), "gunicorn.worker_class"),
    (minimal(allowed_hosts="*"), "allowed_hosts"),
    (minimal(log_level="LOUD"), "log_level"),
    (minimal(gunicorn={"metrics_bind": "8001"}), "gunicorn.metrics_bind"),
    (minimal(gunicorn={"metrics_bind": "127.0.0.1:0"}), "gunicorn.metrics_bind"),
    (minimal(gunicorn={"metrics_bind": "127.0.0.1:http"}), "gunicorn.metrics_bind"),
    (minimal(gunicorn={"metrics_bind": ":8001"}), "gunicorn.metrics_bind"),
    (minimal(gunicorn={"metrics_bind": 8001}), "gunicorn.metrics_bind"),
    (minimal(gunicorn={"bind": "127.0.0.1:8000", "metrics_bind": "127.0.0.1:8000"}),
     "gunicorn.metrics_bind"),
    (minimal(gunicorn={"access_log_level": "CHATTY"}), "gunicorn.access_log_level"),
])
def test_bad_key_named_with_file(tmp_path, data, key):
    env = write(tmp_path, data)
    with pytest.raises(ConfigError) as caught:
        load_config(env)
    message = str(caught.value)
    assert f"key '{key}'" in message and str(tmp_path / "config.json") in message


def test_defaults(tmp_path):
    config = load_config(write(tmp_path, minimal()))
    assert config.debug is False
    assert config.redis is None
    db = config.database
    assert (db.connect_timeout, db.statement_timeout_ms, db.conn_max_age) == (2, 5000, 0)
    assert config.gunicorn.bind == "127.0.0.1:8000" and config.gunicorn.workers == 2
    # Without a metrics bind the workers serve /metrics on `bind`, as in dev and tests.
    assert config.gunicorn.metrics_bind == "" and config.gunicorn.metrics_address is None
    assert config.gunicorn.access_log_level == "WARNING"


def test_metrics_bind_parsed(tmp_path):
    config = load_config(write(tmp_path, minimal(gunicorn={"metrics_bind": "127.0.30.21:8001"})))
    assert config.gunicorn.metrics_address == ("127.0.30.21", 8001)
    ipv6 = load_config(write(tmp_path, minimal(gunicorn={"metrics_bind": "[::1]:9001"})))
    assert ipv6.gunicorn.metrics_address == ("::1", 9001)
    env = write(tmp_path, minimal())
    env["CIVICPULSE__GUNICORN__METRICS_BIND"] = "127.0.0.1:9002"
    assert load_config(env).gunicorn.metrics_address == ("127.0.0.1", 9002)


def test_env_overrides_keep_types(tmp_path):
    env = write(tmp_path, minimal(redis={"url": "redis://127.0.0.1:6379/0"}))
    env.update({"CIVICPULSE__DATABASE__PORT": "6432", "CIVICPULSE__DEBUG": "true",
                "CIVICPULSE__DATABASE__HOST": "127.0.0.2", "CIVICPULSE__REDIS__TTL": "60"})
    config = load_config(env)
    assert config.database.port == 6432 and config.database.host == "127.0.0.2"
    assert config.debug is True and config.redis.ttl == 60
    env["CIVICPULSE__DATABASE__PASSWORD"] = "12345"
    assert load_config(env).database.password == "12345"
    env["CIVICPULSE__REDIS"] = "null"
    assert load_config(env).redis is None


def test_postgres_settings_behind_pgbouncer(tmp_path):
    db = load_config(write(tmp_path, minimal(database={
        "engine": "postgresql", "name": "cp", "user": "cp", "pgbouncer": True,
        "statement_timeout_ms": 1234, "connect_timeout": 3}))).database
    settings = django_database(db)
    assert settings["OPTIONS"]["prepare_threshold"] is None
    assert settings["OPTIONS"]["connect_timeout"] == 3
    assert "options" not in settings["OPTIONS"]  # PgBouncer rejects it
    assert settings["DISABLE_SERVER_SIDE_CURSORS"] is True


def test_postgres_settings_direct(tmp_path):
    db = load_config(write(tmp_path, minimal(database={
        "engine": "postgresql", "name": "cp", "user": "cp", "statement_timeout_ms": 1234})
    )).database
    assert django_database(db)["OPTIONS"]["options"] == "-c statement_timeout=1234"


def test_sqlite_settings(tmp_path):
    tuned = load_config(write(tmp_path, minimal(database={"engine": "sqlite", "path": "x"})))
    options = django_database(tuned.database)["OPTIONS"]
    assert options["transaction_mode"] == "IMMEDIATE"
    assert "journal_mode=WAL" in options["init_command"]
    plain = load_config(write(tmp_path, minimal(
        database={"engine": "sqlite", "path": "x", "sqlite_tuned": False})))
    assert django_database(plain.database)["OPTIONS"] == {}


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_breaker_cycle():
    clock = FakeClock()
    states: list[str] = []
    breaker = CircuitBreaker(3, 5.0, on_state_change=states.append, clock=clock)
    for _ in range(2):
        assert breaker.allow()
        breaker.record_failure()
    assert breaker.state == CLOSED
    breaker.allow()
    breaker.record_failure()
    assert breaker.state == OPEN and not breaker.allow()

    clock.now += 5.0
    assert breaker.allow()  # the single half-open probe
    assert breaker.state == HALF_OPEN and not breaker.allow()
    breaker.record_failure()  # probe failed: open again for a full cool-down
    assert breaker.state == OPEN
    clock.now += 4.9
    assert not breaker.allow()
    clock.now += 0.2
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state == CLOSED and breaker.allow()
    assert states == [OPEN, HALF_OPEN, OPEN, HALF_OPEN, CLOSED]


class FakeTimers:
    """Scheduled callbacks, run by hand."""

    def __init__(self) -> None:
        self.pending: list[tuple[float, object]] = []

    def __call__(self, delay_s: float, func) -> None:
        self.pending.append((delay_s, func))

    def run_next(self) -> None:
        _, func = self.pending.pop(0)
        func()


def test_breaker_closes_by_itself_without_traffic_once_the_dependency_answers():
    clock, timers = FakeClock(), FakeTimers()
    states: list[str] = []
    healthy = {"up": False}

    def probe() -> None:
        if not healthy["up"]:
            raise ConnectionError("refused")

    breaker = CircuitBreaker(1, 5.0, on_state_change=states.append, clock=clock,
                             probe=probe, schedule=timers)
    breaker.record_failure()
    assert breaker.state == OPEN and [d for d, _ in timers.pending] == [5.0]
    breaker.record_failure()  # more failures while open: still one pending probe
    assert len(timers.pending) == 1

    clock.now += 5.0
    timers.run_next()  # dependency still down: open again, next probe scheduled
    assert breaker.state == OPEN and len(timers.pending) == 1
    healthy["up"] = True
    clock.now += 5.0
    timers.run_next()  # no caller came by; the breaker's own probe closes it
    assert breaker.state == CLOSED and timers.pending == []
    assert states == [OPEN, HALF_OPEN, OPEN, HALF_OPEN, CLOSED]


def test_breaker_background_probe_waits_out_a_fresh_cool_down_and_a_callers_probe():
    clock, timers = FakeClock(), FakeTimers()
    calls: list[str] = []
    breaker = CircuitBreaker(1, 5.0, clock=clock, probe=lambda: calls.append("ping"),
                             schedule=timers)
    breaker.record_failure()
    clock.now += 3.0
    breaker._opened_at = clock.now  # re-opened meanwhile: the cool-down restarted
    clock.now += 2.0
    timers.run_next()
    assert calls == [] and breaker.state == OPEN and len(timers.pending) == 1
    clock.now += 5.0
    assert breaker.allow()  # a caller takes the half-open probe first
    timers.run_next()
    assert calls == [] and breaker.state == HALF_OPEN and len(timers.pending) == 1
    breaker.record_success()  # the caller's probe closed it
    timers.run_next()
    assert calls == [] and breaker.state == CLOSED and timers.pending == []


def test_breaker_success_resets_failure_count():
    breaker = CircuitBreaker(2, 1.0)
    breaker.record_failure()
    breaker.record_success()
    breaker.record_failure()
    assert breaker.state == CLOSED


def test_gunicorn_conf_from_config(tmp_path):
    config = minimal(gunicorn={"bind": "127.0.0.1:8123", "workers": 3, "timeout": 17,
                               "worker_class": "gthread", "threads": 4})
    env = app_env(tmp_path / "config.json")
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "config.json").chmod(0o600)
    probe = (
        "import json, os\n"
        "import civicpulse.gunicorn_conf as g\n"
        "print(json.dumps({k: getattr(g, k) for k in ('bind', 'workers', 'timeout',"
        " 'worker_class', 'threads', 'worker_tmp_dir', 'forwarded_allow_ips', 'accesslog',"
        " 'preload_app', 'wsgi_app')} | {'dir': os.environ['PROMETHEUS_MULTIPROC_DIR']}))\n"
        "g.on_exit(None)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True,
                         text=True, timeout=60, check=True).stdout
    settings = json.loads(out)
    assert settings["bind"] == ["127.0.0.1:8123"] and settings["workers"] == 3
    assert settings["worker_class"] == "gthread" and settings["threads"] == 4
    assert settings["timeout"] == 17 and settings["worker_tmp_dir"] == "/dev/shm"
    assert settings["forwarded_allow_ips"] == "127.0.0.1,::1"
    assert settings["accesslog"] is None and settings["preload_app"] is False
    assert settings["wsgi_app"] == "civicpulse.wsgi:application"
    assert settings["dir"]  # a private multiprocess dir is made when none is given


def _gunicorn_settings(tmp_path, config: dict, probe: str) -> dict:
    env = app_env(tmp_path / "config.json")
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "config.json").chmod(0o600)
    out = subprocess.run([sys.executable, "-c", "import json\n"
                          "import civicpulse.gunicorn_conf as g\n" + probe
                          + "\ng.on_exit(None)\n"],
                         env=env, capture_output=True, text=True, timeout=60, check=True).stdout
    return json.loads(out)


def test_gunicorn_access_log_muted_by_default(tmp_path):
    probe = ("print(json.dumps({'access': g.logconfig_dict['loggers']['gunicorn.access']['level'],"
             " 'error': g.logconfig_dict['loggers']['gunicorn.error']['level'],"
             " 'logger_class': g.logger_class.__name__}))")
    settings = _gunicorn_settings(tmp_path, minimal(), probe)
    # The app logs one JSON line per request; Gunicorn's own access line would double it.
    assert settings == {"access": "WARNING", "error": "INFO",
                        "logger_class": "AccessLevelLogger"}
    loud = _gunicorn_settings(tmp_path, minimal(gunicorn={"access_log_level": "info"}), probe)
    assert loud["access"] == "INFO"


def test_access_logger_skips_the_line_below_info(tmp_path):
    probe = (
        "import logging\n"
        "from gunicorn.config import Config\n"
        "cfg = Config()\n"
        f"cfg.set('accesslog', {str(tmp_path / 'access.log')!r})\n"
        "log = g.AccessLevelLogger(cfg)\n"
        "log.access_log.setLevel(logging.WARNING)\n"
        "calls = []\n"
        "log.atoms = lambda *a: calls.append(a) or {}\n"
        "log.access(None, None, {}, None)\n"
        "muted = len(calls)\n"
        "log.access_log.setLevel(logging.INFO)\n"
        "log.access(None, None, {}, None)\n"
        "print(json.dumps({'muted': muted, 'loud': len(calls)}))")
    assert _gunicorn_settings(tmp_path, minimal(), probe) == {"muted": 0, "loud": 1}
