"""CORS for allowed origins: django-cors-headers asks this handler about each API request."""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.http import HttpRequest

from access.credentials import allowed_origins
from access.services import normalize_origin


def cors_allow_listed_origin(sender: Any, request: HttpRequest, **kwargs: Any) -> bool:
    """Called by django-cors-headers for a cross-origin request: allow enabled origins only.

    django-cors-headers asks for every path, not only `CORS_URLS_REGEX`'s; answering only for
    those keeps the origin lookup (a database query) off every other path — `/health` above all,
    which must answer while PostgreSQL is down.
    """
    if not re.match(settings.CORS_URLS_REGEX, request.path_info):
        return False
    origin = request.headers.get("origin", "")
    try:
        return normalize_origin(origin) in allowed_origins()
    except ValidationError:  # a malformed Origin header is simply not allowed
        return False
