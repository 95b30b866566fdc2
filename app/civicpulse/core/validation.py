"""Request validation. Every failure names the offending field for the client."""

from __future__ import annotations

import json
import re
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import EmailValidator

USERNAME_MAX = 150
EMAIL_MAX = 254
AUDIT_LIMIT_DEFAULT = 100
AUDIT_LIMIT_MAX = 1000
IDEMPOTENCY_KEY_MAX = 255

_USERNAME_RE = re.compile(r"[\w.@+-]+\Z")
_REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._-]{1,64}\Z")
_IDEMPOTENCY_KEY_RE = re.compile(rf"[\x21-\x7e]{{1,{IDEMPOTENCY_KEY_MAX}}}\Z")
_validate_email = EmailValidator()


class InvalidRequest(Exception):
    """A 400: `field` is None when the body as a whole is unusable."""

    def __init__(self, message: str, field: str | None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


def parse_json_object(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest("request body is not valid JSON", None) from exc
    if not isinstance(data, dict):
        raise InvalidRequest("request body must be a JSON object", None)
    return data


def _string_field(data: dict[str, Any], name: str, max_length: int) -> str:
    if name not in data or data[name] is None:
        raise InvalidRequest(f"{name} is required", name)
    value = data[name]
    if not isinstance(value, str):
        raise InvalidRequest(f"{name} must be a string", name)
    if not value:
        raise InvalidRequest(f"{name} must not be empty", name)
    if len(value) > max_length:
        raise InvalidRequest(f"{name} must be at most {max_length} characters", name)
    return value


def parse_new_user(body: bytes) -> tuple[str, str]:
    """(username, email) from a POST /api/users/ body, or InvalidRequest."""
    data = parse_json_object(body)
    username = _string_field(data, "username", USERNAME_MAX)
    if not _USERNAME_RE.match(username):
        raise InvalidRequest(
            "username may contain only letters, digits and @ . + - _", "username")
    email = _string_field(data, "email", EMAIL_MAX)
    try:
        _validate_email(email)
    except ValidationError as exc:
        raise InvalidRequest("email is not a valid email address", "email") from exc
    return username, email


def _int_param(raw: str | None, name: str, default: int, minimum: int,
               maximum: int | None = None) -> int:
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise InvalidRequest(f"{name} must be an integer", name) from exc
    if value < minimum:
        raise InvalidRequest(f"{name} must be >= {minimum}", name)
    if maximum is not None and value > maximum:
        raise InvalidRequest(f"{name} must be <= {maximum}", name)
    return value


def parse_audit_query(after: str | None, limit: str | None) -> tuple[int, int]:
    """(after, limit) for GET /api/audit/."""
    # Ids are bigint; cap `after` so the bound parameter always fits.
    return (
        _int_param(after, "after", 0, 0, 2**63 - 1),
        _int_param(limit, "limit", AUDIT_LIMIT_DEFAULT, 1, AUDIT_LIMIT_MAX),
    )


def valid_request_id(value: str | None) -> str | None:
    """The client's X-Request-ID if it is safe to log and store, else None."""
    if value and _REQUEST_ID_RE.match(value):
        return value
    return None


def parse_idempotency_key(value: str | None) -> str | None:
    if value is None:
        return None
    if not _IDEMPOTENCY_KEY_RE.match(value):
        raise InvalidRequest(
            f"Idempotency-Key must be 1-{IDEMPOTENCY_KEY_MAX} printable ASCII characters",
            "Idempotency-Key")
    return value
