"""`GET /api/v1/history`: one thin view; parsing in `params`, queries in `selectors`."""

from __future__ import annotations

import logging
from typing import Any

from django.db import DatabaseError
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema

# DRF ships no type information (djangorestframework-stubs is not a dependency): Any to mypy.
from rest_framework import serializers  # type: ignore[import-untyped]
from rest_framework.request import Request  # type: ignore[import-untyped]
from rest_framework.response import Response  # type: ignore[import-untyped]
from rest_framework.views import APIView  # type: ignore[import-untyped]

from access.authentication import HasHistoryScope, require_channel
from history.params import (
    INTERVALS,
    LIMIT_DEFAULT,
    LIMIT_MAX,
    TYPES,
    InvalidParameter,
    encode_cursor,
    parse_history_query,
)
from history.selectors import Page, candle_list, history_list

log = logging.getLogger(__name__)


class HistoryView(APIView):  # type: ignore[misc]  # APIView is Any without DRF stubs
    """Recorded history of one type, newest first, in cursor pages; or OHLC candles."""

    permission_classes = (HasHistoryScope,)

    class OutputSerializer(serializers.Serializer):  # type: ignore[misc]
        """The page (documentation only: the view builds plain dicts)."""

        type = serializers.ChoiceField(choices=TYPES)
        symbol = serializers.CharField(allow_null=True)
        limit = serializers.IntegerField()
        data = serializers.ListField(
            child=serializers.DictField(),
            help_text=(
                "Records: the record as the worker accepted it (contract 3.1 fields and any "
                "extra ones) plus `seq` (state seq after the change) and `received_at`. "
                "Candles (with `interval`): {time, open, high, low, close, volume, ticks}."
            ),
        )
        next = serializers.CharField(
            allow_null=True, help_text="Cursor of the next (older) page; null on the last page."
        )

    class ErrorSerializer(serializers.Serializer):  # type: ignore[misc]
        """A refused query parameter."""

        error = serializers.CharField()
        parameter = serializers.CharField()
        message = serializers.CharField()

    @extend_schema(
        operation_id="history_list",
        summary="Recorded history, newest first",
        description=(
            "Rows with `from <= time < to`, where `time` is the record's `updated_at` if it has "
            "one, else when the worker received it. Pages are keyset pages: pass `next` back as "
            "`cursor` with the same other parameters. With `interval` (type=market_data, symbol "
            "required) the data are OHLC candles of `last_price` in UTC-aligned buckets, newest "
            "first, `limit` buckets per page at most. Unknown, repeated or invalid parameters "
            "give 400 naming the parameter."
        ),
        parameters=[
            OpenApiParameter("type", str, required=True, enum=list(TYPES)),
            OpenApiParameter(
                "symbol",
                str,
                pattern=r"^[A-Za-z0-9_-]{1,64}$",
                description="Symbol (market_data, orders, positions) or strategy id "
                "(strategies); [A-Za-z0-9_-]{1,64}; not allowed for account.",
            ),
            OpenApiParameter(
                "from", OpenApiTypes.DATETIME, description="RFC 3339 with offset; inclusive."
            ),
            OpenApiParameter(
                "to", OpenApiTypes.DATETIME, description="RFC 3339 with offset; exclusive."
            ),
            OpenApiParameter(
                "limit",
                {"type": "integer", "minimum": 1, "maximum": LIMIT_MAX},
                description=f"1..{LIMIT_MAX}, default {LIMIT_DEFAULT}.",
            ),
            OpenApiParameter(
                "cursor",
                str,
                pattern=r"^[A-Za-z0-9_-]+$",
                description="The `next` of the previous page.",
            ),
            OpenApiParameter("interval", str, enum=list(INTERVALS)),
        ],
        responses={
            200: OutputSerializer,
            400: OpenApiResponse(ErrorSerializer, description="A bad query parameter."),
            403: OpenApiResponse(
                description="The token has no history scope, or the type (or, for a token "
                "narrowed to symbols, the symbol) is outside its channels."
            ),
            503: OpenApiResponse(description="The history database is unreachable."),
        },
        examples=[
            OpenApiExample(
                "Market data",
                response_only=True,
                value={
                    "type": "market_data",
                    "symbol": "BTCUSDT",
                    "limit": 1,
                    "data": [
                        {
                            "symbol": "BTCUSDT",
                            "last_price": 50100.5,
                            "bid_price": 50100.0,
                            "ask_price": 50101.0,
                            "updated_at": "2026-05-01T12:00:00.250Z",
                            "seq": 81234,
                            "received_at": "2026-05-01T12:00:00.251342Z",
                        }
                    ],
                    "next": "eyJ0IjoxNzc3NjM2ODAwMjUwMDAwLCJpIjo0MTJ9",
                },
            ),
            OpenApiExample(
                "Candles (interval=1m)",
                response_only=True,
                value={
                    "type": "market_data",
                    "symbol": "BTCUSDT",
                    "limit": 1,
                    "data": [
                        {
                            "time": "2026-05-01T12:00:00.000000Z",
                            "open": 50090.0,
                            "high": 50120.5,
                            "low": 50080.0,
                            "close": 50100.5,
                            "volume": 18234.2,
                            "ticks": 240,
                        }
                    ],
                    "next": "eyJ0IjoxNzc3NjM2ODAwMDAwMDAwfQ",
                },
            ),
            OpenApiExample(
                "Bad parameter",
                status_codes=["400"],
                response_only=True,
                value={
                    "error": "invalid_parameter",
                    "parameter": "limit",
                    "message": "must be an integer from 1 to 1000",
                },
            ),
        ],
    )
    def get(self, request: Request) -> Response:
        """Called for GET: validate the query, select one page, render it."""
        try:
            query = parse_history_query(dict(request.query_params.lists()))
        except InvalidParameter as exc:
            return Response(exc.body(), status=400)
        require_channel(request, query.type, query.symbol)
        page: Page
        try:
            if query.step is not None and query.symbol is not None:
                page = candle_list(
                    symbol=query.symbol,
                    step=query.step,
                    start=query.start,
                    end=query.end,
                    before=query.before,
                    limit=query.limit,
                )
            else:
                page = history_list(
                    kind=query.type,
                    symbol=query.symbol,
                    start=query.start,
                    end=query.end,
                    before=query.before,
                    limit=query.limit,
                )
        except DatabaseError as exc:
            log.warning("history query failed", extra={"error": str(exc).strip()[:300]})
            return Response(
                {"error": "unavailable", "message": "the history database is unavailable"},
                status=503,
            )
        body: dict[str, Any] = {
            "type": query.type,
            "symbol": query.symbol,
            "limit": query.limit,
            "data": page.items,
            "next": None if page.next is None else encode_cursor(page.next),
        }
        return Response(body)
