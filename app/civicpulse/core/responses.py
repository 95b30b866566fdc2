"""JSON responses, including Django's error handlers (no HTML ever leaves the API)."""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpRequest, HttpResponse

JSON = "application/json"


def json_response(data: Any, status: int = 200) -> HttpResponse:
    return HttpResponse(json.dumps(data), status=status, content_type=JSON)


def raw_json_response(body: str | bytes, status: int = 200) -> HttpResponse:
    """For bodies already serialised (cached or stored idempotent responses)."""
    return HttpResponse(body, status=status, content_type=JSON)


def error(status: int, message: str, field: str | None = None, *,
          with_field: bool = True) -> HttpResponse:
    data: dict[str, Any] = {"error": message}
    if with_field:
        data["field"] = field
    return json_response(data, status)


def method_not_allowed(allowed: tuple[str, ...]) -> HttpResponse:
    response = error(405, "method not allowed", with_field=False)
    response["Allow"] = ", ".join(allowed)
    return response


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return error(400, "bad request", None)


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return error(404, "not found", with_field=False)


def server_error(request: HttpRequest) -> HttpResponse:
    return error(500, "internal server error", with_field=False)
