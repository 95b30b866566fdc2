"""Per-request id, JSON access log line and HTTP metrics, in one middleware."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable

from django.core.exceptions import DisallowedHost
from django.http import HttpRequest, HttpResponse

from civicpulse.core import metrics, responses
from civicpulse.core.validation import valid_request_id

log = logging.getLogger("civicpulse.request")

# Anything else is folded into "other" so a scanner cannot explode label cardinality.
_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class RequestObservabilityMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        start = time.perf_counter()
        request_id = valid_request_id(request.META.get("HTTP_X_REQUEST_ID")) or uuid.uuid4().hex
        request.request_id = request_id  # type: ignore[attr-defined]
        try:
            # Nothing else in this lean stack calls get_host(), and that is where
            # Django enforces ALLOWED_HOSTS.
            request.get_host()
        except DisallowedHost:
            response = responses.error(400, "invalid Host header", None)
        else:
            response = self.get_response(request)
        response["X-Request-ID"] = request_id

        duration = time.perf_counter() - start
        match = getattr(request, "resolver_match", None)
        view = (match.url_name or "unnamed") if match is not None else "unmatched"
        method = request.method if request.method in _KNOWN_METHODS else "other"
        requests, durations = metrics.http_request_metrics(view, method, response.status_code)
        requests.inc()
        durations.observe(duration)
        log.info(
            "request",
            extra={
                "request_id": request_id,
                "method": request.method,
                "path": request.path,
                "status": response.status_code,
                "duration_ms": round(duration * 1000.0, 3),
                "view": view,
            },
        )
        return response
