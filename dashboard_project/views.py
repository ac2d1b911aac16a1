"""Process-level HTTP endpoints: liveness."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

SERVICE_NAME = "dashboard-server"


@require_GET
def health(request: HttpRequest) -> JsonResponse:
    """Liveness: answers while the process serves HTTP, whatever its dependencies say."""
    return JsonResponse({"status": "ok", "service": SERVICE_NAME})
