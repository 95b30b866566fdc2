"""Load and validate the JSON runtime config named by ``CIVICPULSE_CONFIG``.

The file is written at deploy time and holds secrets, so everything the process
needs comes from it (plus ``CIVICPULSE__SECTION__KEY`` env overrides for tests).
Errors name the offending key and the file so a bad deploy fails loudly at start.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

CONFIG_ENV = "CIVICPULSE_CONFIG"
OVERRIDE_PREFIX = "CIVICPULSE__"


class ConfigError(Exception):
    """Raised for a missing, unreadable or invalid config file or key."""


def setting(default: Any = MISSING, *, minimum: float | None = None,
            choices: tuple[str, ...] | None = None) -> Any:
    """A config key of a section: its default (none: the key is required) and the bounds
    `_Reader.read_fields` checks, declared once next to the field they fill."""
    bounds = {"minimum": minimum, "choices": choices}
    if default is MISSING:
        return field(metadata=bounds)
    return field(default=default, metadata=bounds)


DATABASE_ENGINES = ("postgresql", "sqlite")
SQLITE_SYNCHRONOUS = ("NORMAL", "FULL")


@dataclass(frozen=True)
class DatabaseConfig:
    engine: str = setting(choices=DATABASE_ENGINES)
    # name and user are required for PostgreSQL only; SQLite needs a path instead.
    name: str = setting()
    host: str = setting("127.0.0.1")
    port: int = setting(5432, minimum=1)
    user: str = setting("")
    password: str = setting("")
    connect_timeout: int = setting(2, minimum=1)
    statement_timeout_ms: int = setting(5000, minimum=0)
    conn_max_age: int = setting(0, minimum=0)
    pgbouncer: bool = setting(False)
    path: str = setting("")
    sqlite_tuned: bool = setting(True)
    #: SQLite's PRAGMA synchronous for the tuned mode: NORMAL loses the last commits
    #: on a power loss in WAL mode; FULL syncs the WAL on every commit (durable).
    sqlite_synchronous: str = setting("NORMAL", choices=SQLITE_SYNCHRONOUS)


@dataclass(frozen=True)
class RedisConfig:
    url: str = setting()
    socket_timeout: float = setting(0.25, minimum=0.01)
    connect_timeout: float = setting(0.25, minimum=0.01)
    ttl: int = setting(300, minimum=1)
    breaker_failures: int = setting(3, minimum=1)
    breaker_reset_s: float = setting(5.0, minimum=0.1)


@dataclass(frozen=True)
class GunicornConfig:
    bind: str = setting("127.0.0.1:8000")
    workers: int = setting(2, minimum=1)
    worker_class: str = setting("sync", choices=("sync", "gthread"))
    threads: int = setting(1, minimum=1)
    timeout: int = setting(30, minimum=1)
    graceful_timeout: int = setting(20, minimum=1)
    keepalive: int = setting(5, minimum=0)
    max_requests: int = setting(0, minimum=0)
    max_requests_jitter: int = setting(0, minimum=0)
    forwarded_allow_ips: str = setting("127.0.0.1,::1")
    #: "host:port" where the Gunicorn master serves /metrics itself, so that a scrape
    #: never queues behind busy workers; "" = the workers serve /metrics on `bind`.
    metrics_bind: str = setting("")
    #: Level of the `gunicorn.access` logger. The app already logs one JSON line per
    #: request, so Gunicorn's own access line is off (below WARNING) by default.
    access_log_level: str = setting("WARNING")

    @property
    def metrics_address(self) -> tuple[str, int] | None:
        """(host, port) of `metrics_bind`, or None when the workers serve /metrics."""
        if not self.metrics_bind:
            return None
        host, _, port = self.metrics_bind.rpartition(":")
        return host.strip("[]"), int(port)


@dataclass(frozen=True)
class AppConfig:
    source: str
    secret_key: str
    database: DatabaseConfig
    redis: RedisConfig | None
    gunicorn: GunicornConfig = field(default_factory=GunicornConfig)
    debug: bool = False
    allowed_hosts: tuple[str, ...] = ("127.0.0.1", "localhost")
    log_level: str = "INFO"
    metrics_dir: str = ""
    #: Serve the chaos report's read-then-write ORM pattern at
    #: /api/report-pattern/users/ (the benchmark's workload; off in production).
    report_pattern: bool = False


class _Reader:
    """Typed access to one JSON object; every error names ``file: key.path``."""

    def __init__(self, data: Any, source: str, prefix: str = "") -> None:
        self.source = source
        self.prefix = prefix
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: {prefix or 'top level'} must be a JSON object")
        self.data = data

    def _key(self, key: str) -> str:
        return f"{self.prefix}{key}"

    def fail(self, key: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.source}: key '{self._key(key)}' {problem}")

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = ..., *,
            minimum: float | None = None, choices: tuple[str, ...] | None = None) -> Any:
        if key not in self.data or self.data[key] is None:
            if default is ...:
                raise self.fail(key, "is required")
            return default
        value = self.data[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        # bool is a subclass of int; a stray `true` must not become a port number.
        if isinstance(value, bool) and bool not in kinds:
            raise self.fail(key, f"must be {_names(kinds)}, got boolean")
        if float in kinds and isinstance(value, int):
            value = float(value)
        if not isinstance(value, kinds):
            raise self.fail(key, f"must be {_names(kinds)}, got {type(value).__name__}")
        if minimum is not None and value < minimum:
            raise self.fail(key, f"must be >= {minimum}, got {value}")
        if choices is not None and value not in choices:
            raise self.fail(key, f"must be one of {', '.join(choices)}; got {value!r}")
        return value

    def read_fields(self, cls: type, names: tuple[str, ...], required: tuple[str, ...] = ()
               ) -> dict[str, Any]:
        """The named keys of a config dataclass, each read by its field's type, default
        and `setting` bounds; `required` makes keys with a default required here."""
        declared = {f.name: f for f in fields(cls)}
        values = {}
        for name in names:
            spec = declared[name]
            default = ... if spec.default is MISSING or name in required else spec.default
            values[name] = self.get(name, _KINDS[spec.type], default, **spec.metadata)
        return values

    def section(self, key: str, required: bool) -> _Reader | None:
        if self.data.get(key) is None:
            if required:
                raise self.fail(key, "is required")
            return None
        return _Reader(self.data[key], self.source, f"{self._key(key)}.")


#: A setting's annotation (a string: annotations are postponed) → the JSON value it takes.
_KINDS: dict[str, type] = {"str": str, "int": int, "float": float, "bool": bool}


def _names(kinds: tuple[type, ...]) -> str:
    label = {str: "a string", int: "an integer", float: "a number", bool: "a boolean",
             list: "a list", dict: "an object"}
    return " or ".join(label.get(k, k.__name__) for k in kinds)


def apply_env_overrides(data: dict[str, Any], environ: dict[str, str]) -> dict[str, Any]:
    """Apply ``CIVICPULSE__A__B=value`` env vars onto ``data['a']['b']``.

    Values are parsed as JSON when possible so numbers, booleans, null and lists
    keep their types (but a key that is a string in the file stays a string);
    anything else is taken as a plain string. Deeper keys are
    applied first, so a whole-section override (``CIVICPULSE__REDIS=null``) wins.
    """
    overrides = []
    for name, raw in environ.items():
        if name.startswith(OVERRIDE_PREFIX):
            path = [part.lower() for part in name[len(OVERRIDE_PREFIX):].split("__") if part]
            if path:
                overrides.append((path, raw))
    for path, raw in sorted(overrides, key=lambda item: (-len(item[0]), item[0])):
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = raw
        node = data
        for part in path[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        if isinstance(node.get(path[-1]), str):
            # A password of "12345" must stay a string when the file has one there.
            value = raw
        node[path[-1]] = value
    return data


def parse_config(data: dict[str, Any], source: str) -> AppConfig:
    """Validate a decoded config document; ``source`` is used in error messages."""
    top = _Reader(data, source)
    secret_key = top.get("secret_key", str)
    if len(secret_key) < 32:
        raise top.fail("secret_key", "must be at least 32 characters")
    hosts = top.get("allowed_hosts", list, ["127.0.0.1", "localhost"])
    if not all(isinstance(h, str) and h for h in hosts):
        raise top.fail("allowed_hosts", "must be a list of non-empty strings")
    log_level = _log_level(top, "log_level", "INFO")
    return AppConfig(
        source=source,
        secret_key=secret_key,
        debug=top.get("debug", bool, False),
        allowed_hosts=tuple(hosts),
        log_level=log_level,
        metrics_dir=top.get("metrics_dir", str, ""),
        report_pattern=top.get("report_pattern", bool, False),
        database=_parse_database(top.section("database", required=True)),
        redis=_parse_redis(top.section("redis", required=False)),
        gunicorn=_parse_gunicorn(top.section("gunicorn", required=False)),
    )


def _parse_database(db: _Reader | None) -> DatabaseConfig:
    assert db is not None
    engine = db.get("engine", str, choices=DATABASE_ENGINES)
    if engine == "sqlite":
        return DatabaseConfig(
            engine=engine, name="",
            **db.read_fields(DatabaseConfig, ("path", "sqlite_tuned", "sqlite_synchronous"),
                        required=("path",)))
    return DatabaseConfig(
        engine=engine,
        **db.read_fields(DatabaseConfig, ("name", "host", "port", "user", "password",
                                     "connect_timeout", "statement_timeout_ms", "conn_max_age",
                                     "pgbouncer"), required=("user",)))


def _parse_redis(section: _Reader | None) -> RedisConfig | None:
    if section is None:
        return None
    url = section.get("url", str)
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise section.fail("url", "must start with redis://, rediss:// or unix://")
    return RedisConfig(
        url=url,
        **section.read_fields(RedisConfig, ("socket_timeout", "connect_timeout", "ttl",
                                       "breaker_failures", "breaker_reset_s")))


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _log_level(reader: _Reader, key: str, default: str) -> str:
    level = reader.get(key, str, default).upper()
    if level not in LOG_LEVELS:
        raise reader.fail(key, f"must be DEBUG, INFO, WARNING, ERROR or CRITICAL; got {level!r}")
    return level


def _host_port(reader: _Reader, key: str, value: str) -> str:
    """Check a "host:port" (IPv6 as "[::1]:port"); returns it unchanged."""
    host, sep, port = value.rpartition(":")
    if not sep or not host.strip("[]") or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise reader.fail(key, f"must be HOST:PORT with a port from 1 to 65535; got {value!r}")
    return value


def _parse_gunicorn(section: _Reader | None) -> GunicornConfig:
    if section is None:
        return GunicornConfig()
    listeners = section.read_fields(GunicornConfig, ("bind", "metrics_bind"))
    bind, metrics_bind = listeners["bind"], listeners["metrics_bind"]
    if metrics_bind:
        _host_port(section, "metrics_bind", metrics_bind)
        if metrics_bind == bind:
            raise section.fail("metrics_bind", f"must differ from bind ({bind}): the master "
                               "serves metrics on a listener of its own")
    return GunicornConfig(
        bind=bind,
        metrics_bind=metrics_bind,
        access_log_level=_log_level(section, "access_log_level", GunicornConfig.access_log_level),
        **section.read_fields(GunicornConfig, ("workers", "worker_class", "threads", "timeout",
                                          "graceful_timeout", "keepalive", "max_requests",
                                          "max_requests_jitter", "forwarded_allow_ips")))


def load_config(environ: dict[str, str] | None = None) -> AppConfig:
    """Read the file named by ``CIVICPULSE_CONFIG``, apply env overrides, validate."""
    env = dict(os.environ if environ is None else environ)
    path = env.get(CONFIG_ENV)
    if not path:
        raise ConfigError(f"environment variable {CONFIG_ENV} is not set; "
                          "it must name the JSON config file")
    try:
        text = Path(path).read_text(encoding="utf-8")
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file ({exc.strerror})") from exc
    if mode & (stat.S_IROTH | stat.S_IWOTH):
        # The file holds the secret key and passwords.
        raise ConfigError(f"{path}: config file must not be readable or writable by others "
                          f"(mode {stat.S_IMODE(mode):04o}; use 0600 or 0640)")
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a JSON object")
    return parse_config(apply_env_overrides(data, env), path)


_cached: AppConfig | None = None


def get_config() -> AppConfig:
    """Process-wide config, loaded once (settings and gunicorn both call this)."""
    global _cached
    if _cached is None:
        _cached = load_config()
    return _cached
