"""HTTP views: parse, delegate to user_store/audit/health, shape the JSON response."""

from __future__ import annotations

import functools
import hashlib
import logging
from collections.abc import Callable
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.db import DatabaseError, connection
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from civicpulse.core import audit, db_errors, report_pattern, responses, user_store
from civicpulse.core import health as health_checks
from civicpulse.core import metrics as app_metrics
from civicpulse.core.validation import (
    InvalidRequest,
    parse_audit_query,
    parse_idempotency_key,
    parse_new_user,
)
from civicpulse.database import close_if_closed_by_peer

log = logging.getLogger(__name__)

# Ids are bigint; larger path values cannot exist and must not reach the database.
MAX_ID = 2**63 - 1


def uses_database(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Drop a persistent connection PgBouncer already closed before the view runs.

    This replaces Django's CONN_HEALTH_CHECKS round trip (see database.py).
    """
    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        close_if_closed_by_peer(connection)
        return view(request, *args, **kwargs)

    return wrapper


def _database_failure(exc: DatabaseError, request: HttpRequest) -> HttpResponse:
    kind = db_errors.record(exc)
    log.error("database error (%s): %s", kind, exc,
              extra={"request_id": getattr(request, "request_id", None)})
    return responses.error(503, "database unavailable", None, with_field=False)


def health(request: HttpRequest) -> HttpResponse:
    if request.method not in ("GET", "HEAD"):
        return responses.method_not_allowed(("GET", "HEAD"))
    status, body = health_checks.run_checks()
    response = responses.json_response(body, status)
    response["Cache-Control"] = "no-store"
    return response


def takes_new_user(view: Callable[[HttpRequest, str, str], HttpResponse]
                   ) -> Callable[[HttpRequest], HttpResponse]:
    """POST only: the view gets the body's username and email; a bad body gets a 400."""
    @functools.wraps(view)
    def wrapper(request: HttpRequest) -> HttpResponse:
        if request.method != "POST":
            return responses.method_not_allowed(("POST",))
        try:
            username, email = parse_new_user(request.body)
        except RequestDataTooBig:
            return responses.error(400, "request body too large", None)
        except InvalidRequest as exc:
            return responses.error(400, exc.message, exc.field)
        return view(request, username, email)

    return wrapper


@csrf_exempt
@uses_database
@takes_new_user
def users_create(request: HttpRequest, username: str, email: str) -> HttpResponse:
    try:
        key = parse_idempotency_key(request.META.get("HTTP_IDEMPOTENCY_KEY"))
    except InvalidRequest as exc:
        return responses.error(400, exc.message, exc.field)
    fingerprint = hashlib.sha256(f"{username}\0{email}".encode()).hexdigest() if key else ""
    try:
        result = user_store.create_user(username, email, request.request_id,  # type: ignore[attr-defined]
                                        key, fingerprint)
    except user_store.UsernameTaken:
        return responses.error(409, "username already exists", "username")
    except user_store.IdempotencyKeyReused:
        return responses.error(
            422, "Idempotency-Key was already used with a different request",
            "Idempotency-Key")
    except DatabaseError as exc:
        return _database_failure(exc, request)
    response = responses.raw_json_response(result.body, result.status)
    if result.replayed:
        response["Idempotent-Replayed"] = "true"
    return response


@csrf_exempt
@uses_database
@takes_new_user
def users_create_report_pattern(request: HttpRequest, username: str, email: str
                                ) -> HttpResponse:
    """The chaos report's read-then-write ORM create (see report_pattern.py)."""
    try:
        body = report_pattern.create_user_as_the_report_did(
            username, email, request.request_id)  # type: ignore[attr-defined]
    except report_pattern.UsernameTaken:
        return responses.error(409, "username already exists", "username")
    except DatabaseError as exc:
        response = _database_failure(exc, request)
        # The benchmark counts the report's lock errors from the responses too.
        lock = report_pattern.lock_error(exc)
        if lock:
            response["X-Database-Error"] = lock
        return response
    return responses.raw_json_response(body, 201)


@uses_database
def user_detail(request: HttpRequest, user_id: int) -> HttpResponse:
    if request.method not in ("GET", "HEAD"):
        return responses.method_not_allowed(("GET", "HEAD"))
    if user_id > MAX_ID:
        return responses.error(404, "not found", with_field=False)
    try:
        body = user_store.user_document(user_id)
    except DatabaseError as exc:
        return _database_failure(exc, request)
    if body is None:
        return responses.error(404, "not found", with_field=False)
    return responses.raw_json_response(body)


@uses_database
def audit_list(request: HttpRequest) -> HttpResponse:
    if request.method not in ("GET", "HEAD"):
        return responses.method_not_allowed(("GET", "HEAD"))
    try:
        after, limit = parse_audit_query(request.GET.get("after"), request.GET.get("limit"))
    except InvalidRequest as exc:
        return responses.error(400, exc.message, exc.field)
    try:
        events = audit.list_events(after, limit)
    except DatabaseError as exc:
        return _database_failure(exc, request)
    next_after = events[-1]["id"] if events else after
    return responses.json_response({"events": events, "next_after": next_after})


def metrics(request: HttpRequest) -> HttpResponse:
    if request.method not in ("GET", "HEAD"):
        return responses.method_not_allowed(("GET", "HEAD"))
    body, content_type = app_metrics.render()
    return HttpResponse(body, content_type=content_type)
