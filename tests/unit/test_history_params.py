"""The history API's query parsing and cursor: strict, and never anything but InvalidParameter."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from history.params import (
    Cursor,
    HistoryQuery,
    InvalidParameter,
    decode_cursor,
    encode_cursor,
    parse_export_query,
    parse_history_query,
)
from shared.core.values import is_key


def parse(**params: str) -> HistoryQuery:
    return parse_history_query({name: [value] for name, value in params.items()})


def refused(params: dict[str, list[str]]) -> InvalidParameter:
    with pytest.raises(InvalidParameter) as caught:
        parse_history_query(params)
    return caught.value


def test_defaults() -> None:
    query = parse(type="orders")
    assert query == HistoryQuery(
        type="orders", symbol=None, start=None, end=None, limit=100, before=None, interval=None
    )


def test_full_query_is_parsed_to_utc() -> None:
    query = parse(
        type="market_data",
        symbol="BTC-USDT_1",
        **{"from": "2026-05-01T12:00:00.5+02:00", "to": "2026-05-01T12:00:00Z"},
        limit="1000",
        interval="5m",
    )
    assert query.start == datetime(2026, 5, 1, 10, 0, 0, 500000, tzinfo=UTC)
    assert query.end == datetime(2026, 5, 1, 12, tzinfo=UTC)
    assert query.limit == 1000
    assert query.step == timedelta(minutes=5)


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({}, "type"),
        ({"type": "trades"}, "type"),
        ({"type": ""}, "type"),
        ({"type": "orders", "limit": "0"}, "limit"),
        ({"type": "orders", "limit": "1001"}, "limit"),
        ({"type": "orders", "limit": "ten"}, "limit"),
        ({"type": "orders", "limit": "5.0"}, "limit"),
        ({"type": "orders", "limit": "+5"}, "limit"),
        ({"type": "orders", "limit": " 5"}, "limit"),
        ({"type": "orders", "limit": "-1"}, "limit"),
        ({"type": "orders", "limit": "99999999999999999999"}, "limit"),
        ({"type": "orders", "from": "yesterday"}, "from"),
        ({"type": "orders", "from": "2026-05-01T12:00:00"}, "from"),  # naive
        ({"type": "orders", "from": "2026-05-01"}, "from"),
        ({"type": "orders", "from": "1714564800"}, "from"),
        ({"type": "orders", "to": "2026-02-30T00:00:00Z"}, "to"),
        ({"type": "orders", "to": "2026-05-01T24:00:00Z"}, "to"),
        ({"type": "orders", "to": "2026-05-01T12:00:00 02:00"}, "to"),  # an unencoded '+'
        ({"type": "orders", "from": "0001-01-01T00:00:00+01:00"}, "from"),
        ({"type": "orders", "from": "2026-05-02T00:00:00Z", "to": "2026-05-01T00:00:00Z"}, "to"),
        ({"type": "orders", "from": "2026-05-01T00:00:00Z", "to": "2026-05-01T00:00:00Z"}, "to"),
        ({"type": "orders", "symbol": "BTC/USDT"}, "symbol"),
        ({"type": "orders", "symbol": "x" * 65}, "symbol"),
        ({"type": "orders", "symbol": ""}, "symbol"),
        ({"type": "orders", "symbol": "BTC\n"}, "symbol"),
        ({"type": "orders", "symbol": "' OR 1=1 --"}, "symbol"),
        ({"type": "account", "symbol": "BTCUSDT"}, "symbol"),
        ({"type": "orders", "cursor": "not-a-cursor"}, "cursor"),
        ({"type": "orders", "cursor": "e30"}, "cursor"),  # {}
        ({"type": "orders", "cursor": "!!!"}, "cursor"),
        ({"type": "orders", "cursor": "A" * 500}, "cursor"),
        ({"type": "market_data", "symbol": "X", "interval": "2m"}, "interval"),
        ({"type": "orders", "symbol": "X", "interval": "1m"}, "interval"),
        ({"type": "market_data", "interval": "1m"}, "symbol"),
        ({"type": "orders", "sybmol": "BTCUSDT"}, "sybmol"),
        ({"type": "orders", "format": "json"}, "format"),
    ],
)
def test_every_bad_parameter_is_named(params: dict[str, str], parameter: str) -> None:
    error = refused({name: [value] for name, value in params.items()})
    assert error.parameter == parameter
    assert error.body() == {
        "error": "invalid_parameter",
        "parameter": parameter,
        "message": error.message,
    }


def test_a_repeated_parameter_is_refused() -> None:
    assert refused({"type": ["orders"], "limit": ["1", "2"]}).parameter == "limit"


def test_an_unencoded_plus_gets_a_hint() -> None:
    error = refused({"type": ["orders"], "from": ["2026-05-01T12:00:00 02:00"]})
    assert "%2B" in error.message


def test_row_cursor_round_trips() -> None:
    cursor = Cursor(datetime(2026, 5, 1, 12, 0, 0, 123456, tzinfo=UTC), 3, 42)
    text = encode_cursor(cursor)
    assert decode_cursor(text, candles=False) == cursor
    assert parse(type="orders", cursor=text).before == cursor


def test_a_row_cursor_is_not_a_candle_cursor_and_back() -> None:
    rows = encode_cursor(Cursor(datetime(2026, 5, 1, tzinfo=UTC), 3, 42))
    candles = encode_cursor(Cursor(datetime(2026, 5, 1, tzinfo=UTC)))
    with pytest.raises(InvalidParameter):
        decode_cursor(rows, candles=True)
    with pytest.raises(InvalidParameter):
        decode_cursor(candles, candles=False)
    assert decode_cursor(candles, candles=True) == Cursor(datetime(2026, 5, 1, tzinfo=UTC))


@pytest.mark.parametrize(
    "payload",
    [
        b'{"t":1,"w":-1,"n":1}',  # writer id out of range
        b'{"t":1,"w":2147483648,"n":1}',
        b'{"t":1,"w":1,"n":-1}',  # n out of range
        b'{"t":1,"w":1,"n":"1"}',
        b'{"t":1,"i":1}',  # a cursor of the schema before day partitions
        b'{"t":1.5,"w":1,"n":1}',
        b'{"t":true,"w":1,"n":1}',
        b'{"t":1,"w":1,"n":1,"x":1}',
        b'{"t":99999999999999999999,"w":1,"n":1}',
        b'{"n":1,"w":1,"t":1}',  # not our canonical encoding
        b"[1,1]",
        b"null",
    ],
)
def test_forged_cursors_are_refused(payload: bytes) -> None:
    import base64

    text = base64.urlsafe_b64encode(payload).decode().rstrip("=")
    with pytest.raises(InvalidParameter):
        decode_cursor(text, candles=False)


@given(st.dictionaries(st.text(max_size=12), st.lists(st.text(max_size=40), max_size=3)))
def test_any_query_parses_or_is_refused_by_name(params: dict[str, list[str]]) -> None:
    named: str | None = None
    try:
        parse_history_query(params)
    except InvalidParameter as exc:
        named = exc.parameter
    # a missing `type`, or `symbol` missing beside `interval`, names a parameter not given
    assert named is None or named in params or named in ("type", "symbol")


@given(st.text(max_size=300), st.booleans())
def test_any_text_is_a_cursor_or_refused(text: str, candles: bool) -> None:
    cursor: Cursor | None = None
    named = None
    try:
        cursor = decode_cursor(text, candles=candles)
    except InvalidParameter as exc:
        named = exc.parameter
    assert named == "cursor" if cursor is None else encode_cursor(cursor) == text


@given(
    st.datetimes(
        min_value=datetime(1, 1, 3), max_value=datetime(9999, 12, 29), timezones=st.just(UTC)
    ),
    st.integers(0, 2**31 - 1),
    st.integers(0, 2**63 - 1),
)
def test_every_cursor_round_trips(moment: datetime, writer: int, n: int) -> None:
    cursor = Cursor(moment, writer, n)
    assert decode_cursor(encode_cursor(cursor), candles=False) == cursor


HOSTILE_SYMBOLS = [
    "BTCUSDT\n",  # a look-alike: `$` would match before the newline
    "\nBTCUSDT",
    "BTC USDT",
    "BTC.USDT",  # a dotted-path segment
    "BTC\x00",
    "BTC\u200bUSDT",  # a zero-width space
    "\uff22\uff34\uff23",  # fullwidth BTC
    "BTC\u0661",  # an Arabic-Indic digit one (\d would take it)
    "x" * 65,
    "%2E%2E",
    "../etc",
]


@pytest.mark.parametrize("symbol", HOSTILE_SYMBOLS)
def test_hostile_symbols_are_refused_by_the_history_and_the_export_queries(symbol: str) -> None:
    assert refused({"type": ["market_data"], "symbol": [symbol]}).parameter == "symbol"
    with pytest.raises(InvalidParameter) as caught:
        parse_export_query(
            {
                "type": ["market_data"],
                "format": ["csv"],
                "from": ["2026-05-01T00:00:00Z"],
                "to": ["2026-05-02T00:00:00Z"],
                "symbol": [f"BTCUSDT,{symbol}"],
            },
            max_days=7,
        )
    assert caught.value.parameter == "symbol"


@given(st.text(max_size=70))
def test_a_symbol_is_taken_exactly_when_the_core_takes_it_as_a_key(symbol: str) -> None:
    # the history API's symbol rule is the records' KEY_PATTERN (shared/core), not one of its own
    named: str | None = None
    try:
        parse(type="market_data", symbol=symbol)
    except InvalidParameter as exc:
        named = exc.parameter
    assert named == (None if is_key(symbol) else "symbol")
