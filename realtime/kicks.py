"""Staff kicks by client, by token or by user: over REST and from the admin, each one logged
with who asked (`admin.kick`). The web process holding a client closes it with 4000.

A token's or a user's clients are those of the presence registry (up to 5 s old); a client id
is sent as given.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any, Literal

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    inline_serializer,
)

# DRF ships no type information (djangorestframework-stubs is not a dependency): Any to mypy.
from rest_framework import serializers  # type: ignore[import-untyped]
from rest_framework.permissions import IsAdminUser  # type: ignore[import-untyped]
from rest_framework.request import Request  # type: ignore[import-untyped]
from rest_framework.response import Response  # type: ignore[import-untyped]
from rest_framework.views import APIView  # type: ignore[import-untyped]

from realtime.selectors import client_list
from shared.http_errors import ErrorCode, error_body

log = logging.getLogger(__name__)

Target = Literal["client", "token", "user"]
_FIELD: dict[Target, str] = {"client": "id", "token": "token", "user": "user"}


def matching(clients: Iterable[dict[str, Any]], target: Target, value: str) -> list[str]:
    """Ids of the listed clients whose `target` (id, token name, user name) is `value`."""
    field = _FIELD[target]
    return [str(c["id"]) for c in clients if value and c.get(field) == value]


def kick(target: Target, value: str, *, by: str) -> list[str]:
    """Close every connected client matching; log it with `by`; the ids asked to close."""
    # Imported here: Django imports this module in every process (admin, URLconf), and the hub
    # brings the web process's metrics, which no other process may export.
    from realtime.hub import kick_client

    config = settings.CONFIG
    if target == "client":
        # Sent whether or not it is listed yet: the registry is up to 5 s behind a connect.
        ids = [value]
    else:
        ids = matching(async_to_sync(client_list)(config=config), target, value)
    layer = get_channel_layer()
    for client_id in ids:
        async_to_sync(kick_client)(layer, prefix=config.redis_key_prefix, client_id=client_id)
    log.info(
        "clients kicked",
        extra={"event": "admin.kick", "by": by, "target": target, "value": value, "clients": ids},
    )
    return ids


_KICKED = inline_serializer(
    "Kicked", {"kicked": serializers.ListField(child=serializers.CharField())}
)


def _kick_view(target: Target, what: str) -> type[APIView]:
    class KickView(APIView):  # type: ignore[misc]  # APIView is Any without DRF stubs
        permission_classes = (IsAdminUser,)

        @extend_schema(
            operation_id=f"kick_by_{target}",
            summary=f"Close every client of {what} (code 4000)",
            parameters=[OpenApiParameter("value", str, location="path", description=what)],
            request=None,
            responses={
                202: _KICKED,
                **(
                    {}
                    if target == "client"
                    else {404: OpenApiResponse(description=f"No connected client of {what}.")}
                ),
            },
        )
        def post(self, request: Request, value: str) -> Response:
            """Called for POST: ask the web processes to close the matching clients."""
            ids = kick(target, value, by=request.user.get_username())
            if not ids:
                body = error_body(ErrorCode.NOT_FOUND, f"no connected client of {what}")
                return Response(body, status=404)
            return Response({"kicked": ids}, status=202)

    KickView.__name__ = KickView.__qualname__ = f"Kick{target.title()}View"
    return KickView


KickClientView = _kick_view("client", "this client id")
KickTokenView = _kick_view("token", "this token name")
KickUserView = _kick_view("user", "this user name")
