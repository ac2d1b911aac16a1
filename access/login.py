"""Slow brute force on the login forms (the dashboard's and admin's): failures per address.

A failed login counts against the client's address like a wrong token does; past
`auth_failures_per_ip` within `auth_failure_window_s`, the address's login POSTs get 429 until
the window has passed.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBase

from access.authentication import client_address

View = Callable[..., HttpResponseBase]


def login_throttled(view: View) -> View:
    """Wrap a login view: refuse blocked addresses, count each failed POST."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if request.method != "POST":
            return view(request, *args, **kwargs)
        # Imported here: admin and URL modules are imported in every process (system checks),
        # and the limits' metrics belong to web processes only.
        from access.gate import process_limits

        limits = process_limits(settings.CONFIG)
        address = client_address(request)
        if limits.auth_blocked(address):
            return HttpResponse(
                "Too many failed logins from this address; try again later.",
                status=429,
                content_type="text/plain",
            )
        response = view(request, *args, **kwargs)
        if response.status_code == 200:  # the form again, with errors: a failed login
            limits.auth_failed(address, "login")
        return response

    return wrapper
