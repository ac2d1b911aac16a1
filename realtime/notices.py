"""Staff notices: one line of text that every connected client of every web process is shown.

`POST /api/v1/notice` and the admin's "Connected clients" page publish a `client.notice`
message on the hubs' control group (logged as `admin.notice` with who asked); each hub checks
it again (anyone who can PUBLISH to Redis reaches that group) and writes one `notice` frame,
encoded once per format, to each of its clients.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any, Final

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer

# DRF ships no type information (djangorestframework-stubs is not a dependency): Any to mypy.
from rest_framework import serializers  # type: ignore[import-untyped]
from rest_framework.parsers import JSONParser  # type: ignore[import-untyped]
from rest_framework.permissions import IsAdminUser  # type: ignore[import-untyped]
from rest_framework.request import Request  # type: ignore[import-untyped]
from rest_framework.response import Response  # type: ignore[import-untyped]
from rest_framework.views import APIView  # type: ignore[import-untyped]

from realtime import protocol
from realtime.group_subscription import CONTROL
from realtime.member import write_each
from realtime.protocol import Format, Notice, NoticeError
from shared.http_errors import ErrorCode, error_body
from shared.keys import RedisNames

log = logging.getLogger(__name__)

EVENT: Final = "client.notice"  # the control-group message type the hubs act on


def send(notice: Notice, *, by: str) -> None:
    """Publish `notice` to every web process's hub; log it with `by`."""
    group = RedisNames(settings.CONFIG.redis_key_prefix).group(CONTROL)
    async_to_sync(get_channel_layer().group_send)(
        group, {"type": EVENT, "level": notice.level, "text": notice.text}
    )
    log.info(
        "notice sent",
        extra={
            "event": "admin.notice",
            "by": by,
            "notice_level": notice.level,
            "text_length": len(notice.text),
        },
    )


def deliver(members: Iterable[Any], event: dict[str, Any]) -> int:
    """Called by a hub for a `client.notice` message: one notice frame to each member."""
    from realtime import metrics  # the web process's metrics: see `send`

    try:
        notice = protocol.parse_notice(event)
    except NoticeError as exc:  # not from our API: someone PUBLISHed to the group
        log.warning("hub dropped a malformed notice", extra={"error": str(exc)})
        return 0
    frame = notice.frame()
    frames = {fmt: protocol.encode(frame, fmt) for fmt in Format}
    written = write_each(members, frames, what="notice")
    for cadence, count in written.items():
        metrics.sent(cadence, "notice", count)
    return written.total()


_NOTICE_REQUEST = inline_serializer(
    "NoticeRequest",
    {
        "level": serializers.ChoiceField(choices=protocol.NOTICE_LEVELS),
        "text": serializers.RegexField(
            protocol.NOTICE_TEXT_PATTERN,
            min_length=1,
            max_length=protocol.NOTICE_MAX_CHARS,
            trim_whitespace=False,
            help_text="One line of plain text, shown as text (never as markup).",
        ),
    },
)
_SENT = inline_serializer("NoticeSent", {"sent": serializers.BooleanField()})


class NoticeView(APIView):  # type: ignore[misc]  # APIView is Any without DRF stubs
    """`POST /api/v1/notice`: a notice to every connected client (staff only)."""

    permission_classes = (IsAdminUser,)
    parser_classes = (JSONParser,)

    @extend_schema(
        operation_id="broadcast_notice",
        summary="Show a notice to every connected client",
        request=_NOTICE_REQUEST,
        responses={
            202: _SENT,
            400: OpenApiResponse(
                description="Not JSON, not an object, an unknown level, or a text that is "
                f"empty, longer than {protocol.NOTICE_MAX_CHARS} characters or holds control "
                "characters: nothing was sent."
            ),
            415: OpenApiResponse(description="The body is not `application/json`."),
        },
    )
    def post(self, request: Request) -> Response:
        """Called for POST: check the body, publish the notice to every web process."""
        try:
            notice = protocol.parse_notice(request.data)
        except NoticeError as exc:
            return Response(error_body(ErrorCode.INVALID_NOTICE, str(exc)), status=400)
        send(notice, by=request.user.get_username())
        return Response({"sent": True}, status=202)
