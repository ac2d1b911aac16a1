"""CORS for allowed origins: django-cors-headers asks this handler about each API request."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.http import HttpRequest

from access.credentials import allowed_origins
from access.services import normalize_origin


def cors_allow_listed_origin(sender: Any, request: HttpRequest, **kwargs: Any) -> bool:
    """Called by django-cors-headers for a cross-origin request: allow enabled origins only."""
    origin = request.headers.get("origin", "")
    try:
        return normalize_origin(origin) in allowed_origins()
    except ValidationError:  # a malformed Origin header is simply not allowed
        return False
