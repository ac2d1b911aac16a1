"""`GET /api/v1/history`: one thin view; parsing in `params`, queries in `selectors`, bulk
exports (`format=csv|ndjson`) in `export`."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

from django.conf import settings
from django.db import DatabaseError
from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema

# DRF ships no type information (djangorestframework-stubs is not a dependency): Any to mypy.
from rest_framework import serializers  # type: ignore[import-untyped]
from rest_framework.negotiation import DefaultContentNegotiation  # type: ignore[import-untyped]
from rest_framework.request import Request  # type: ignore[import-untyped]
from rest_framework.response import Response  # type: ignore[import-untyped]
from rest_framework.views import APIView  # type: ignore[import-untyped]

from access.authentication import HasHistoryScope, require_channel
from history.export import CONTENT_TYPES, export_body
from history.params import (
    EXPORT_SYMBOLS_MAX,
    FORMATS,
    INTERVALS,
    LIMIT_DEFAULT,
    LIMIT_MAX,
    ORDERS,
    TYPES,
    InvalidParameter,
    encode_cursor,
    parse_export_query,
    parse_history_query,
)
from history.selectors import Page, candle_list, history_list, symbol_id
from history.throttles import HistoryRateThrottle
from shared.core.values import KEY_CHARS
from shared.http_errors import ErrorCode, error_body

log = logging.getLogger(__name__)
_UNAVAILABLE = error_body(ErrorCode.UNAVAILABLE, "the history database is unavailable")


class _FormatIsAParameter(DefaultContentNegotiation):  # type: ignore[misc]
    """DRF's negotiation without its `?format=` renderer override: here `format` is ours."""

    settings = SimpleNamespace(URL_FORMAT_OVERRIDE=None)


class HistoryView(APIView):  # type: ignore[misc]  # APIView is Any without DRF stubs
    """Recorded history of one type, newest first, in cursor pages; or OHLC candles."""

    permission_classes = (HasHistoryScope,)
    throttle_classes = (HistoryRateThrottle,)
    content_negotiation_class = _FormatIsAParameter

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
            "first, `limit` buckets per page at most. With `format` (csv or ndjson) the whole "
            "range `from`..`to` (both required, at most `history_export_max_days` apart) is "
            "streamed without pages, in `order`, for one or several comma-separated symbols. "
            "Unknown, repeated or invalid parameters give 400 naming the parameter; more than "
            "`history_requests_per_minute` requests a minute per token give 429."
        ),
        parameters=[
            OpenApiParameter("type", str, required=True, enum=list(TYPES)),
            OpenApiParameter(
                "symbol",
                str,
                pattern=rf"^{KEY_CHARS}(,{KEY_CHARS})*$",
                description="Symbol (market_data, orders, positions) or strategy id "
                f"(strategies); {KEY_CHARS}; not allowed for account. With `format`: "
                f"up to {EXPORT_SYMBOLS_MAX}, comma-separated.",
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
            OpenApiParameter(
                "format",
                str,
                enum=list(FORMATS),
                description="Stream the whole range as CSV (a header line, the record's fields, "
                "`extra` as JSON) or NDJSON (one item a line); no `limit`, `cursor`, `interval`.",
            ),
            OpenApiParameter(
                "order", str, enum=list(ORDERS), description="With `format`: asc (default) or desc."
            ),
        ],
        responses={
            (200, "application/json"): OutputSerializer,
            (200, CONTENT_TYPES["csv"]): OpenApiTypes.STR,
            (200, CONTENT_TYPES["ndjson"]): OpenApiTypes.STR,
            400: OpenApiResponse(ErrorSerializer, description="A bad query parameter."),
            403: OpenApiResponse(
                description="The token has no history scope, or the type (or, for a token "
                "narrowed to symbols, the symbol) is outside its channels."
            ),
            429: OpenApiResponse(description="Too many history requests; see Retry-After."),
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
    def get(self, request: Request) -> Response | StreamingHttpResponse:
        """Called for GET: validate the query, select one page, render it (or stream it all)."""
        if "format" in request.query_params:
            return self._export(request)
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
                _UNAVAILABLE,
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

    def _export(self, request: Request) -> Response | StreamingHttpResponse:
        try:
            query = parse_export_query(
                dict(request.query_params.lists()),
                max_days=settings.CONFIG.history_export_max_days,
            )
        except InvalidParameter as exc:
            return Response(exc.body(), status=400)
        for symbol in query.symbols or (None,):
            require_channel(request, query.type, symbol)
        try:  # on Django's connection: a database that is down is a 503 before the body starts
            ids = None
            if query.symbols is not None:
                ids = [key for name in query.symbols if (key := symbol_id(name)) is not None]
        except DatabaseError as exc:
            log.warning("history export failed", extra={"error": str(exc).strip()[:300]})
            return Response(
                _UNAVAILABLE,
                status=503,
            )
        response = StreamingHttpResponse(
            export_body(query, ids), content_type=CONTENT_TYPES[query.format]
        )
        stamp = f"{query.start:%Y%m%dT%H%M%SZ}-{query.end:%Y%m%dT%H%M%SZ}"
        response["Content-Disposition"] = (
            f'attachment; filename="history-{query.type}-{stamp}.{query.format}"'
        )
        return response
