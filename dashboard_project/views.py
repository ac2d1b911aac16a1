"""Process-level HTTP endpoints: liveness, readiness, metrics (the debug dump: realtime/api.py)."""

from __future__ import annotations

import ipaddress

from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

# DRF ships no type information (djangorestframework-stubs is not a dependency): Any to mypy.
from rest_framework.exceptions import (  # type: ignore[import-untyped]
    APIException,
    NotAuthenticated,
)

from access.authentication import request_credential
from dashboard_project.api_errors import allow_methods, exception_response
from dashboard_project.readiness import readiness, without_detail

SERVICE_NAME = "dashboard-server"


@allow_methods("GET", "HEAD", "OPTIONS")
def health(request: HttpRequest) -> JsonResponse:
    """Liveness: answers while the process serves HTTP, whatever its dependencies say.

    HEAD and OPTIONS answer like GET, and any origin may read it, as the earlier service's did
    (load balancers probe with HEAD; its runbook checks CORS with OPTIONS).
    """
    response = JsonResponse({"status": "ok", "service": SERVICE_NAME})
    response["Access-Control-Allow-Origin"] = "*"
    if request.method == "OPTIONS":
        response["Allow"] = "GET, HEAD, OPTIONS"
    return response


@allow_methods("GET")
async def health_ready(request: HttpRequest) -> JsonResponse:
    """Readiness: 200 when Redis, PostgreSQL and a live worker answer, else 503; lists each.

    Open to anyone (probes carry no credentials); the details of each check only for staff
    (a session or a token) and loopback callers.
    """
    body = await readiness(settings.CONFIG)
    if not await _sees_detail(request):
        body = without_detail(body)
    return JsonResponse(body, status=200 if body["status"] == "ready" else 503)


async def _sees_detail(request: HttpRequest) -> bool:
    if _is_loopback(request.META.get("REMOTE_ADDR")):
        return True
    user = await request.auser()
    if user.is_active and user.is_staff:
        return True
    try:  # a bad token makes the caller anonymous here, not refused: it is a probe
        credential = await sync_to_async(request_credential)(request)
    except APIException:
        return False
    return credential is not None and credential.staff


@allow_methods("GET")
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus exposition of this process: loopback clients only unless `metrics_public`."""
    if not settings.CONFIG.metrics_public and not _is_loopback(request.META.get("REMOTE_ADDR")):
        # Elsewhere, any active token (e.g. one issued for the Prometheus scraper).
        refusal = _token_refusal(request)
        if refusal is not None:
            return refusal
    # Registers the web metrics if nothing has yet (the ASGI application does, through the
    # consumer). Not at module level: every manage.py command imports the URLconf for its system
    # checks, and the worker and recorder must export only their own metrics.
    import realtime.metrics  # noqa: F401

    return HttpResponse(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST)


def _token_refusal(request: HttpRequest) -> JsonResponse | None:
    try:
        credential = request_credential(request)
    except APIException as exc:  # a bad token (401) or a blocked address (429)
        refusal = exc
    else:
        if credential is not None:
            return None
        refusal = NotAuthenticated("a token is required off loopback")
    response = exception_response(refusal)
    if response.status_code == 401:
        response["WWW-Authenticate"] = 'Bearer realm="dashboard"'
    return response


def _is_loopback(address: str | None) -> bool:
    try:
        return ipaddress.ip_address(address or "").is_loopback
    except ValueError:
        return False
