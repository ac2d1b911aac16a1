"""`GET /api/v1/state` and `GET /api/v1/clients`: thin views over `realtime.selectors`."""

from __future__ import annotations

from asgiref.sync import async_to_sync
from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema

# DRF ships no type information (djangorestframework-stubs is not a dependency): Any to mypy.
from rest_framework.permissions import IsAdminUser  # type: ignore[import-untyped]
from rest_framework.request import Request  # type: ignore[import-untyped]
from rest_framework.response import Response  # type: ignore[import-untyped]
from rest_framework.views import APIView  # type: ignore[import-untyped]

from access.authentication import request_scope
from realtime.protocol import filter_snapshot
from realtime.selectors import client_list, state_dump, state_snapshot


class StateView(APIView):  # type: ignore[misc]  # APIView is Any without DRF stubs
    """The current state: the shape of the WebSocket snapshot's `data` (contract section 4),
    with its `seq` and `epoch` (contract 4.1), from which a WebSocket client can resume."""

    @extend_schema(responses={200: OpenApiTypes.OBJECT}, summary="Current state")
    def get(self, request: Request) -> Response:
        """Called for GET: the shared snapshot's data, seq and epoch."""
        data, seq, epoch = async_to_sync(state_snapshot)(config=settings.CONFIG)
        scope = request_scope(request)
        if scope is not None:  # a token sees the channels (and symbols) it may take
            data = filter_snapshot(data, scope)
        return Response({**data, "seq": seq, "epoch": epoch})


class DebugView(APIView):  # type: ignore[misc]  # APIView is Any without DRF stubs
    """The whole shared snapshot with timestamp, sequence and counts (staff or a staff token)."""

    permission_classes = (IsAdminUser,)

    @extend_schema(responses={200: OpenApiTypes.OBJECT}, summary="Full state dump")
    def get(self, request: Request) -> Response:
        """Called for GET: the state, its seq, the time and per-channel counts."""
        return Response(
            async_to_sync(state_dump)(config=settings.CONFIG, scope=request_scope(request))
        )


class ClientsView(APIView):  # type: ignore[misc]  # APIView is Any without DRF stubs
    """Connected clients of every web process (staff only)."""

    permission_classes = (IsAdminUser,)

    @extend_schema(responses={200: OpenApiTypes.OBJECT}, summary="Connected clients")
    def get(self, request: Request) -> Response:
        """Called for GET: id, type, format, subscriptions, address, connected_at, sent."""
        return Response({"clients": async_to_sync(client_list)(config=settings.CONFIG)})
