"""Record validation: every kind accepts its contract shape and rejects bad input with a reason."""

from __future__ import annotations

import orjson
import pytest

from shared.core.records import Accepted, Channel, Rejection, parse_record, validate_record

MAX = 65_536

GOOD = {
    Channel.MARKET_DATA: {
        "symbol": "BTCUSDT",
        "last_price": 50000.5,
        "bid_price": 49999.0,
        "ask_price": 50001,
        "volume_24h": 1.5e6,
        "high_24h": 51000.0,
        "low_24h": 49000.0,
        "updated_at": "2026-11-23T12:00:00Z",
    },
    Channel.ORDERS: {
        "id": "ord-1",
        "symbol": "BTCUSDT",
        "side": "BUY",
        "type": "LIMIT",
        "price": 50000.0,
        "quantity": 0.5,
        "filled": 0.0,
        "status": "NEW",
        "created_at": "2026-11-23T12:00:00.123456+00:00",
        "updated_at": "2026-11-23T12:00:00Z",
    },
    Channel.POSITIONS: {
        "symbol": "ETHUSDT",
        "side": "LONG",
        "quantity": 2.0,
        "entry_price": 3000.0,
        "mark_price": 3010.0,
        "unrealized_pnl": 20.0,
        "realized_pnl": 0.0,
        "liquidation_price": 2500.0,
        "updated_at": "2026-11-23T12:00:00Z",
    },
    Channel.ACCOUNT: {
        "total_balance": 10000.0,
        "available_balance": 8000.0,
        "margin_used": 2000.0,
        "unrealized_pnl": 20.0,
        "realized_pnl": 5.0,
        "balances": {"USDT": 9000.0, "BTC": 0.02},
        "updated_at": "2026-11-23T12:00:00Z",
    },
    Channel.STRATEGIES: {
        "id": "grid-1",
        "name": "Grid BTC",
        "status": "RUNNING",
        "pnl": 12.5,
        "trades": 42,
        "win_rate": 0.6,
        "updated_at": "2026-11-23T12:00:00Z",
    },
}
KEYS = {
    Channel.MARKET_DATA: "BTCUSDT",
    Channel.ORDERS: "ord-1",
    Channel.POSITIONS: "ETHUSDT",
    Channel.ACCOUNT: None,
    Channel.STRATEGIES: "grid-1",
}
REQUIRED = {
    Channel.MARKET_DATA: ["symbol", "last_price"],
    Channel.ORDERS: ["id", "symbol", "side", "quantity", "status"],
    Channel.POSITIONS: ["symbol", "quantity"],
    Channel.ACCOUNT: ["total_balance"],
    Channel.STRATEGIES: ["id", "status"],
}
NUMBER_FIELDS = {
    Channel.MARKET_DATA: "last_price",
    Channel.ORDERS: "quantity",
    Channel.POSITIONS: "quantity",
    Channel.ACCOUNT: "total_balance",
    Channel.STRATEGIES: "pnl",
}


def _parse(channel: Channel, payload: bytes | str) -> Accepted | Rejection:
    return parse_record(channel, payload, max_bytes=MAX)


@pytest.mark.parametrize("channel", list(Channel))
def test_contract_shape_is_accepted_as_is(channel: Channel) -> None:
    result = _parse(channel, orjson.dumps(GOOD[channel]))
    assert result == Accepted(channel, KEYS[channel], GOOD[channel])


@pytest.mark.parametrize("channel", list(Channel))
def test_extra_fields_pass_through(channel: Channel) -> None:
    payload = {**GOOD[channel], "venue": "binance", "meta": {"a.b": [1, None]}}
    result = _parse(channel, orjson.dumps(payload))
    assert isinstance(result, Accepted)
    assert result.record["venue"] == "binance"
    assert result.record["meta"] == {"a.b": [1, None]}


@pytest.mark.parametrize("channel", list(Channel))
def test_null_fields_are_dropped(channel: Channel) -> None:
    payload = {**GOOD[channel], "updated_at": None, "extra": None}
    result = _parse(channel, orjson.dumps(payload))
    assert isinstance(result, Accepted)
    assert "updated_at" not in result.record
    assert "extra" not in result.record


@pytest.mark.parametrize("channel", list(Channel))
def test_missing_required_field_names_it(channel: Channel) -> None:
    for field in REQUIRED[channel]:
        payload = {k: v for k, v in GOOD[channel].items() if k != field}
        result = _parse(channel, orjson.dumps(payload))
        assert result == Rejection("missing_field", field, result.detail)  # type: ignore[union-attr]


@pytest.mark.parametrize("channel", list(Channel))
@pytest.mark.parametrize(
    ("bad_value", "label"),
    [
        ('"50000"', "number as string"),
        ("true", "boolean for number"),
        ("[1]", "list for number"),
        ("{}", "object for number"),
        ("1e999", "overflowing number"),
        ("-1e999", "overflowing negative number"),
    ],
)
def test_wrong_number_types_are_rejected_not_coerced(
    channel: Channel, bad_value: str, label: str
) -> None:
    field = NUMBER_FIELDS[channel]
    payload = orjson.dumps({**GOOD[channel], field: 0}).replace(
        f'"{field}":0'.encode(), f'"{field}":{bad_value}'.encode()
    )
    result = _parse(channel, payload)
    assert isinstance(result, Rejection), label
    assert result.field == field or result.reason == "bad_json", result


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity", "nan"])
def test_nan_and_infinity_tokens_are_rejected(token: str) -> None:
    payload = '{"symbol":"BTCUSDT","last_price":' + token + "}"
    assert _parse(Channel.MARKET_DATA, payload).reason == "bad_json"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "stamp",
    [1732363200, 1732363200.5, "2026-11-23T12:00:00", "yesterday", "2026-13-45T00:00:00Z", ""],
)
def test_timestamps_must_be_rfc3339_with_offset(stamp: object) -> None:
    payload = {**GOOD[Channel.MARKET_DATA], "updated_at": stamp}
    result = _parse(Channel.MARKET_DATA, orjson.dumps(payload))
    assert isinstance(result, Rejection)
    assert result.field == "updated_at"


@pytest.mark.parametrize(
    "symbol",
    [
        *("", "BTC.USDT", "BTC USDT", "../etc/passwd", "a" * 65, "BTC\x00", "ÄBC", "<script>", 42),
        *("BTCUSDT\n", "\nBTCUSDT", "BTC\nUSDT", "BTCUSDT\r\n"),  # `$` would match before a \n
    ],
)
def test_hostile_symbols_are_rejected(symbol: object) -> None:
    payload = {**GOOD[Channel.MARKET_DATA], "symbol": symbol}
    result = _parse(Channel.MARKET_DATA, orjson.dumps(payload))
    assert isinstance(result, Rejection)
    assert result.field == "symbol"


@pytest.mark.parametrize("channel", [Channel.ORDERS, Channel.STRATEGIES])
def test_ids_with_a_trailing_newline_are_rejected(channel: Channel) -> None:
    payload = {**GOOD[channel], "id": f"{KEYS[channel]}\n"}
    result = _parse(channel, orjson.dumps(payload))
    assert isinstance(result, Rejection)
    assert result.field == "id"


def test_order_symbol_is_checked_too() -> None:
    payload = {**GOOD[Channel.ORDERS], "symbol": "BTC.USDT"}
    result = _parse(Channel.ORDERS, orjson.dumps(payload))
    assert isinstance(result, Rejection)
    assert result.field == "symbol"


def test_order_side_must_be_buy_or_sell() -> None:
    payload = {**GOOD[Channel.ORDERS], "side": "buy"}
    result = _parse(Channel.ORDERS, orjson.dumps(payload))
    assert isinstance(result, Rejection)
    assert result.field == "side"


@pytest.mark.parametrize("name", ["a.b", "", "x" * 65, "with space", "venue\n"])
def test_extra_field_names_that_would_break_paths_are_rejected(name: str) -> None:
    payload = {**GOOD[Channel.MARKET_DATA], name: 1}
    result = _parse(Channel.MARKET_DATA, orjson.dumps(payload))
    assert isinstance(result, Rejection)
    assert result.reason == "invalid_field"


def test_oversized_payload_is_refused_before_parsing() -> None:
    payload = b'{"symbol":"BTCUSDT","last_price":1,"pad":"' + b"x" * 1_000_000 + b'"}'
    result = _parse(Channel.MARKET_DATA, payload)
    assert isinstance(result, Rejection)
    assert result.reason == "too_large"


@pytest.mark.parametrize(
    "payload",
    [b"", b"not json", b"{", b'{"symbol":}', b"\xff\xfe", b'{"a":1}{"b":2}', b"[" * 10_000],
)
def test_malformed_json_is_rejected(payload: bytes) -> None:
    assert _parse(Channel.MARKET_DATA, payload).reason == "bad_json"  # type: ignore[union-attr]


@pytest.mark.parametrize("payload", [b"[]", b"1", b'"x"', b"null", b"true"])
def test_non_objects_are_rejected(payload: bytes) -> None:
    assert _parse(Channel.ACCOUNT, payload).reason == "not_object"  # type: ignore[union-attr]


def test_validate_record_takes_decoded_values() -> None:
    assert isinstance(validate_record(Channel.ACCOUNT, dict(GOOD[Channel.ACCOUNT])), Accepted)
    assert validate_record(Channel.ACCOUNT, [1]).reason == "not_object"  # type: ignore[union-attr]
    bad = validate_record(Channel.ACCOUNT, {"total_balance": "1"})
    assert isinstance(bad, Rejection)
    assert bad.field == "total_balance"


def test_balances_values_must_be_numbers() -> None:
    payload = {**GOOD[Channel.ACCOUNT], "balances": {"USDT": "100"}}
    assert isinstance(_parse(Channel.ACCOUNT, orjson.dumps(payload)), Rejection)


def test_strategy_trades_must_be_a_non_negative_integer() -> None:
    for trades in (-1, 1.5, "3"):
        payload = {**GOOD[Channel.STRATEGIES], "trades": trades}
        result = _parse(Channel.STRATEGIES, orjson.dumps(payload))
        assert isinstance(result, Rejection), trades
        assert result.field == "trades"


def test_long_strings_are_rejected() -> None:
    payload = {**GOOD[Channel.STRATEGIES], "status": "x" * 300}
    result = _parse(Channel.STRATEGIES, orjson.dumps(payload))
    assert isinstance(result, Rejection)
    assert result.field == "status"
