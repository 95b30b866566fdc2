"""Stack secrets: generated on first deploy, kept 0600 outside git, reused after.

Values are never printed or logged; only file paths are passed around. Ansible reads
them on the controller with the `file` lookup when it renders configs.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

#: Every secret a stack needs. Alphanumeric only: they end up in URLs (Redis),
#: libpq connection strings and config files with their own quoting rules.
SECRET_NAMES = (
    "postgres_superuser",  # the cluster's `postgres` role
    "app_db",              # the application's database role
    "pgbouncer_auth",      # PgBouncer's auth_user for auth_query
    "pgbouncer_stats",     # read-only admin console user for the exporter
    "monitoring_db",       # postgres_exporter's role
    "redis",               # requirepass
    "django_secret_key",
)


def ensure_secrets(directory: Path) -> dict[str, Path]:
    """Create missing secrets (mode 0600 from the first byte), keep existing ones."""
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    paths = {}
    for name in SECRET_NAMES:
        path = directory / name
        if not path.exists():
            length = 50 if name == "django_secret_key" else 32
            value = "".join(secrets.choice(_ALPHABET) for _ in range(length))
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(value)
        os.chmod(path, 0o600)
        paths[name] = path
    return paths


def read_secret(directory: Path, name: str) -> str:
    return (directory / name).read_text().strip()


_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
