"""The one HTTP error body (`shared/http_errors.py`) for DRF views and plain Django views.

DRF answers `{"detail": ...}` by default: `api_exception_handler` (settings'
`EXCEPTION_HANDLER`) rewrites its exceptions to `{"error": code, "message": text}` with DRF's own
code. The process endpoints (`/health`, `/health/ready`, `/metrics`) are plain Django views:
they answer through `json_error` and `allow_methods`, with the same codes.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from asgiref.sync import iscoroutinefunction
from django.http import HttpRequest, JsonResponse
from rest_framework.exceptions import APIException  # type: ignore[import-untyped]
from rest_framework.response import Response  # type: ignore[import-untyped]
from rest_framework.views import exception_handler  # type: ignore[import-untyped]

from shared.http_errors import ERROR_CODES, ErrorCode, error_body


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Called by DRF for an exception raised in a view or its authentication/permissions."""
    response = exception_handler(exc, context)
    if response is not None and isinstance(exc, APIException):
        response.data = exception_body(exc)
    return response


def exception_body(exc: APIException) -> dict[str, str]:
    """The error body of a DRF exception: its code (`invalid` for a field-by-field one)."""
    # a code outside the vocabulary is a DRF release's new exception: `error` until listed
    codes = exc.get_codes()
    code = ErrorCode(codes) if isinstance(codes, str) and codes in ERROR_CODES else None
    if code is None:
        code = ErrorCode.ERROR if isinstance(codes, str) else ErrorCode.INVALID
    return error_body(code, str(exc.detail))


def json_error(code: ErrorCode, message: str, *, status: int) -> JsonResponse:
    """A plain Django view's error response."""
    return JsonResponse(error_body(code, message), status=status)


def exception_response(exc: APIException) -> JsonResponse:
    """A plain Django view's response to a DRF exception (one raised by access/)."""
    response = JsonResponse(exception_body(exc), status=exc.status_code)
    wait = getattr(exc, "wait", None)
    if wait is not None:
        response["Retry-After"] = str(int(wait))
    return response


def allow_methods(*methods: str) -> Callable[[Any], Any]:
    """Django's `require_http_methods` with the one error body: 405 `method_not_allowed`."""
    allowed = ", ".join(methods)

    def refusal(request: HttpRequest) -> JsonResponse:
        response = json_error(
            ErrorCode.METHOD_NOT_ALLOWED, f'Method "{request.method}" not allowed.', status=405
        )
        response["Allow"] = allowed
        return response

    def decorator(view: Any) -> Any:
        if iscoroutinefunction(view):

            @functools.wraps(view)
            async def async_wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
                if request.method not in methods:
                    return refusal(request)
                return await view(request, *args, **kwargs)

            return async_wrapper

        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            if request.method not in methods:
                return refusal(request)
            return view(request, *args, **kwargs)

        return wrapper

    return decorator
