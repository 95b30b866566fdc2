"""Timestamps leave the API as ISO 8601 in UTC, whatever the engine returned."""

from __future__ import annotations

from datetime import UTC, datetime

from django.utils.dateparse import parse_datetime


def iso_utc(value: datetime | str) -> str:
    """ISO 8601 with an explicit UTC offset.

    PostgreSQL returns aware datetimes; SQLite through a raw cursor may return naive
    ones or strings (both already UTC because USE_TZ stores UTC).
    """
    if isinstance(value, str):
        parsed = parse_datetime(value)
        if parsed is None:
            raise ValueError(f"unparseable timestamp {value!r}")
        value = parsed
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat()
