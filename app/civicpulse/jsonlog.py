"""One JSON object per log line, so log shippers need no parsing rules."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

# Attributes every LogRecord has; anything else was passed via `extra=` and is emitted.
_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "taskName",
}


class JsonFormatter(logging.Formatter):
    """Format records as JSON lines with ts, level, logger, message and extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, tz=UTC).isoformat(
                timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


# The dictConfig pieces that make a process log like the app: Gunicorn's master and
# workers (gunicorn_conf.logconfig_dict) and Django (settings.LOGGING). Functions, not
# constants: dictConfig pops and replaces entries of what it is given.
def json_formatters() -> dict[str, dict[str, str]]:
    return {"json": {"()": "civicpulse.jsonlog.JsonFormatter"}}


def json_stream_handler(stream: str) -> dict[str, str]:
    """A handler writing JSON lines to `stream` (`ext://sys.stdout` or `ext://sys.stderr`)."""
    return {"class": "logging.StreamHandler", "stream": stream, "formatter": "json"}
