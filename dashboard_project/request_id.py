"""Request ids on HTTP: one per request, on the response and on every log line it causes.

A proxy or client may send its own `X-Request-ID` so that its logs and ours join up; it is
taken only if it is short and plain (it ends up in log lines and a response header, so
anything else is replaced, never escaped). The id lives in a context variable, which Django
copies into the thread a sync view runs in, so sync and async views log it alike.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from contextvars import Token
from typing import Final, cast

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponseBase
from django.utils.decorators import sync_and_async_middleware

from shared.logconfig import current_request_id

HEADER: Final = "X-Request-ID"
_META_KEY: Final = "HTTP_X_REQUEST_ID"
# 64 characters hold any common id (a UUID with dashes is 36, a W3C trace id 32) while keeping a
# hostile header from bloating every log line of the request.
_SAFE_ID: Final = re.compile(r"[A-Za-z0-9._-]{1,64}")

access_log = logging.getLogger("dashboard_project.access")

Response = HttpResponseBase
SyncGetResponse = Callable[[HttpRequest], Response]
AsyncGetResponse = Callable[[HttpRequest], Awaitable[Response]]


def request_id_for(incoming: str | None) -> str:
    """The caller's id if it is safe to log and echo, else a fresh one (uuid4, 32 hex digits)."""
    if incoming is not None and _SAFE_ID.fullmatch(incoming):
        return incoming
    return uuid.uuid4().hex


@sync_and_async_middleware
def request_id_middleware(
    get_response: SyncGetResponse | AsyncGetResponse,
) -> SyncGetResponse | AsyncGetResponse:
    """Give each request an id: in `request.request_id`, the logs and the response header."""
    if iscoroutinefunction(get_response):
        get_async = cast(AsyncGetResponse, get_response)

        async def middleware(request: HttpRequest) -> Response:
            token, started = _begin(request)
            try:
                response = await get_async(request)
            finally:
                current_request_id.reset(token)
            return _finish(request, response, started)

        return markcoroutinefunction(middleware)

    get_sync = cast(SyncGetResponse, get_response)

    def sync_middleware(request: HttpRequest) -> Response:
        token, started = _begin(request)
        try:
            response = get_sync(request)
        finally:
            current_request_id.reset(token)
        return _finish(request, response, started)

    return sync_middleware


def _begin(request: HttpRequest) -> tuple[Token[str | None], float]:
    request_id = request_id_for(request.META.get(_META_KEY))
    request.request_id = request_id  # type: ignore[attr-defined]  # read by views that log it
    return current_request_id.set(request_id), time.perf_counter()


def _finish(request: HttpRequest, response: Response, started: float) -> Response:
    request_id: str = request.request_id  # type: ignore[attr-defined]
    response[HEADER] = request_id
    # One access line per HTTP request (never per WebSocket message: /ws is not routed through
    # Django's middleware). Logged after the context is reset, so the id is passed explicitly.
    access_log.info(
        "http request",
        extra={
            "event": "http.request",
            "request_id": request_id,
            "method": request.method,
            "path": request.path,
            "status": response.status_code,
            "duration_ms": round((time.perf_counter() - started) * 1000, 2),
        },
    )
    return response
