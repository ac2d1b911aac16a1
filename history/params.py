"""The history API's query parameters: strict parsing, and the opaque pagination cursor.

Every problem raises `InvalidParameter` naming the parameter; nothing else escapes, so a bad
query is always a 400 and never a 500. Unknown or repeated parameters are refused too: a typo
such as `sybmol=BTCUSDT` must not silently return every symbol.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import orjson

from history.models import HISTORY_MODELS
from shared.core.values import KEY_CHARS, is_key
from shared.http_errors import ErrorCode, error_body

TYPES: Final = tuple(HISTORY_MODELS)
INTERVALS: Final = {
    "1m": timedelta(minutes=1),
    "5m": timedelta(minutes=5),
    "1h": timedelta(hours=1),
    "1d": timedelta(days=1),
}
PARAMETERS: Final = ("type", "symbol", "from", "to", "limit", "cursor", "interval")
# A bulk export (`format=`): the whole range, no pages.
EXPORT_PARAMETERS: Final = ("type", "symbol", "from", "to", "format", "order")
FORMATS: Final = ("csv", "ndjson")
ORDERS: Final = ("asc", "desc")
EXPORT_SYMBOLS_MAX: Final = 100
LIMIT_DEFAULT: Final = 100
LIMIT_MAX: Final = 1000  # contract section 5
_RFC3339_RE: Final = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})"
)
_LIMIT_RE: Final = re.compile(r"[0-9]{1,4}")
# A cursor is at most ~60 characters; anything far longer is not one of ours.
_CURSOR_MAX_CHARS: Final = 200
_CURSOR_RE: Final = re.compile(r"[A-Za-z0-9_-]+")
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_US_MIN: Final = (datetime(1, 1, 2, tzinfo=UTC) - _EPOCH) // timedelta(microseconds=1)
_US_MAX: Final = (datetime(9999, 12, 30, tzinfo=UTC) - _EPOCH) // timedelta(microseconds=1)
_ID_MAX: Final = 2**63 - 1
_INT4_MAX: Final = 2**31 - 1


class InvalidParameter(Exception):
    """A query parameter the API refuses; `body()` is the 400 response."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(f"{parameter}: {message}")
        self.parameter = parameter
        self.message = message

    def body(self) -> dict[str, str]:
        """The JSON error body."""
        return error_body(ErrorCode.INVALID_PARAMETER, self.message, parameter=self.parameter)


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where the next page starts: rows strictly older than `(time, writer, n)`.

    Candle pages: buckets strictly older than `time`.
    """

    time: datetime
    writer: int | None = None
    n: int | None = None


@dataclass(frozen=True, slots=True)
class HistoryQuery:
    """A validated history query."""

    type: str
    symbol: str | None
    start: datetime | None
    end: datetime | None
    limit: int
    before: Cursor | None
    interval: str | None

    @property
    def step(self) -> timedelta | None:
        """The candle width, if candles were asked for."""
        return INTERVALS[self.interval] if self.interval else None


@dataclass(frozen=True, slots=True)
class ExportQuery:
    """A validated bulk export: every row of a time range, streamed."""

    type: str
    symbols: tuple[str, ...] | None  # None: every symbol
    start: datetime
    end: datetime
    format: str
    ascending: bool


def _single_values(params: Mapping[str, Sequence[str]], allowed: Sequence[str]) -> dict[str, str]:
    for name, values in params.items():
        if name not in allowed:
            raise InvalidParameter(name, f"unknown parameter; allowed: {', '.join(allowed)}")
        if len(values) != 1:
            raise InvalidParameter(name, "given more than once")
    return {name: values[0] for name, values in params.items()}


def _type(value: Mapping[str, str]) -> str:
    kind = value.get("type")
    if kind is None:
        raise InvalidParameter("type", f"required; one of {', '.join(TYPES)}")
    if kind not in TYPES:
        raise InvalidParameter("type", f"must be one of {', '.join(TYPES)}")
    return kind


def _symbol(kind: str, symbol: str) -> str:
    if not is_key(symbol):  # contract 3.1's key pattern, as the records' symbols and ids
        raise InvalidParameter("symbol", f"must match {KEY_CHARS}")
    if HISTORY_MODELS[kind].key_field is None:
        raise InvalidParameter("symbol", f"type {kind} has no symbol")
    return symbol


def parse_export_query(params: Mapping[str, Sequence[str]], *, max_days: int) -> ExportQuery:
    """Validate an export's query string: `from` and `to` required, at most `max_days` apart."""
    value = _single_values(params, EXPORT_PARAMETERS)
    kind = _type(value)
    symbols: tuple[str, ...] | None = None
    if "symbol" in value:
        names = value["symbol"].split(",")
        if len(names) > EXPORT_SYMBOLS_MAX:
            raise InvalidParameter("symbol", f"at most {EXPORT_SYMBOLS_MAX} symbols")
        symbols = tuple(dict.fromkeys(_symbol(kind, name) for name in names))
    start, end = _time(value, "from"), _time(value, "to")
    if start is None:
        raise InvalidParameter("from", "required with format")
    if end is None:
        raise InvalidParameter("to", "required with format")
    if start >= end:
        raise InvalidParameter("to", "must be later than from")
    if end - start > timedelta(days=max_days):
        raise InvalidParameter("to", f"an export spans at most {max_days} days")
    fmt = value.get("format")
    if fmt not in FORMATS:
        raise InvalidParameter("format", f"must be one of {', '.join(FORMATS)}")
    order = value.get("order", "asc")
    if order not in ORDERS:
        raise InvalidParameter("order", f"must be one of {', '.join(ORDERS)}")
    return ExportQuery(kind, symbols, start, end, fmt, order == "asc")


def parse_history_query(params: Mapping[str, Sequence[str]]) -> HistoryQuery:
    """Validate the query string (each name mapped to all its values)."""
    value = _single_values(params, PARAMETERS)
    kind = _type(value)
    symbol = value.get("symbol")
    if symbol is not None:
        _symbol(kind, symbol)
    start = _time(value, "from")
    end = _time(value, "to")
    if start is not None and end is not None and start >= end:
        raise InvalidParameter("to", "must be later than from")
    interval = value.get("interval")
    if interval is not None:
        if interval not in INTERVALS:
            raise InvalidParameter("interval", f"must be one of {', '.join(INTERVALS)}")
        if kind != "market_data":
            raise InvalidParameter("interval", "candles exist for type=market_data only")
        if symbol is None:
            raise InvalidParameter("symbol", "required with interval")
    cursor = value.get("cursor")
    return HistoryQuery(
        type=kind,
        symbol=symbol,
        start=start,
        end=end,
        limit=_limit(value.get("limit")),
        before=None if cursor is None else decode_cursor(cursor, candles=interval is not None),
        interval=interval,
    )


def _time(value: Mapping[str, str], name: str) -> datetime | None:
    text = value.get(name)
    if text is None:
        return None
    hint = ""
    if " " in text:  # an unencoded '+' arrives as a space
        hint = " (write the offset's '+' as %2B in a URL)"
    if not _RFC3339_RE.fullmatch(text):
        raise InvalidParameter(name, f"must be an RFC 3339 time with an offset{hint}")
    try:
        parsed = datetime.fromisoformat(text.upper())
    except ValueError as exc:
        raise InvalidParameter(name, f"not a valid time: {exc}") from None
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00 is before year 1 in UTC
        raise InvalidParameter(name, "out of range") from None


def _limit(text: str | None) -> int:
    if text is None:
        return LIMIT_DEFAULT
    if not _LIMIT_RE.fullmatch(text) or not 1 <= int(text) <= LIMIT_MAX:
        raise InvalidParameter("limit", f"must be an integer from 1 to {LIMIT_MAX}")
    return int(text)


def encode_cursor(cursor: Cursor) -> str:
    """The opaque text of a cursor: base64url of a small JSON object."""
    payload: dict[str, int] = {"t": (cursor.time - _EPOCH) // timedelta(microseconds=1)}
    if cursor.writer is not None and cursor.n is not None:
        payload["w"], payload["n"] = cursor.writer, cursor.n
    return base64.urlsafe_b64encode(orjson.dumps(payload)).decode().rstrip("=")


def decode_cursor(text: str, *, candles: bool) -> Cursor:
    """Parse a cursor made by `encode_cursor` for the same kind of page; else InvalidParameter."""
    bad = InvalidParameter("cursor", "not a cursor this API returned for this kind of query")
    if len(text) > _CURSOR_MAX_CHARS or not _CURSOR_RE.fullmatch(text):
        raise bad
    try:
        payload: Any = orjson.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (binascii.Error, ValueError):
        raise bad from None
    keys = {"t"} if candles else {"t", "w", "n"}
    if not isinstance(payload, dict) or payload.keys() != keys:
        raise bad
    stamp, writer, n = payload["t"], payload.get("w"), payload.get("n")
    if type(stamp) is not int or not _US_MIN <= stamp <= _US_MAX:
        raise bad
    if not candles and not (
        type(writer) is int and 0 <= writer <= _INT4_MAX and type(n) is int and 0 <= n <= _ID_MAX
    ):
        raise bad
    cursor = Cursor(_EPOCH + timedelta(microseconds=stamp), writer, n)
    if encode_cursor(cursor) != text:  # only our own canonical encoding is one
        raise bad
    return cursor
