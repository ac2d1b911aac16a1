"""One error shape for the whole REST API: `{"error": code, "message": text}`.

DRF answers `{"detail": ...}` by default; the history API's own errors (400 naming the
parameter, 503) already use `error`/`message`, so authentication, permission and throttling
errors are rewritten to match.
"""

from __future__ import annotations

from typing import Any

from rest_framework.exceptions import APIException  # type: ignore[import-untyped]
from rest_framework.response import Response  # type: ignore[import-untyped]
from rest_framework.views import exception_handler  # type: ignore[import-untyped]


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Called by DRF for an exception raised in a view or its authentication/permissions."""
    response = exception_handler(exc, context)
    if response is not None and isinstance(exc, APIException):
        codes = exc.get_codes()
        code = codes if isinstance(codes, str) else "invalid"
        response.data = {"error": code, "message": str(exc.detail)}
    return response
