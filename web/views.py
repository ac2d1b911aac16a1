"""The dashboard page: a template and its configuration; the page itself speaks `/ws`."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_safe


@require_safe
@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    """Called for `GET /` (and HEAD): the live dashboard for a logged-in user."""
    config = {
        "wsPath": "/ws",
        "historyPath": "/api/v1/history",
        # The stale warning waits for three of the web cadence's ticks (docs/WEB.md).
        "cadenceMs": settings.CONFIG.web_interval_ms,
    }
    return render(request, "web/dashboard.html", {"dashboard_config": config})
