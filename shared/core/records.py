"""The five record kinds of contract 3.1 and their strict validation.

A payload becomes either an `Accepted` record or a `Rejection` naming the field and the reason;
no exception escapes `parse_record`. Validation is msgspec's (strict: a number sent as a string,
a boolean for a number, NaN/Infinity or an epoch number for a timestamp are rejected, never
coerced). The stored record is the payload's own JSON object, extra fields included, with
`null` fields dropped (a null field and an absent one mean the same thing on the wire, where
`null` deletes a path).
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Final, Literal, NamedTuple

import msgspec

# A record as stored in the state and sent to clients: a JSON object, never mutated once built.
Record = dict[str, Any]


class Channel(StrEnum):
    """The five state channels; each record kind updates exactly one of them."""

    MARKET_DATA = "market_data"
    ORDERS = "orders"
    POSITIONS = "positions"
    ACCOUNT = "account"
    STRATEGIES = "strategies"


ALL_CHANNELS: Final = tuple(Channel)

# Symbols, ids and field names become dotted-path segments and URL path segments: no dots.
# `\A...\Z`, not `^...$`: `$` also matches before a trailing newline, so "BTCUSDT\n" would pass
# and become a look-alike of BTCUSDT. Anchored so that even a `.match()` elsewhere is exact.
KEY_CHARS: Final = r"[A-Za-z0-9_-]{1,64}"  # unanchored: for messages and OpenAPI patterns
KEY_PATTERN: Final = rf"\A{KEY_CHARS}\Z"
_KEY_RE: Final = re.compile(KEY_PATTERN)


def is_key(text: str) -> bool:
    """Whether `text` is a valid symbol, id or field name (KEY_PATTERN, the whole string)."""
    return _KEY_RE.fullmatch(text) is not None


# Checked against KEY_PATTERN by `validate_record` itself: Python's `re` on one field costs a
# third of msgspec's per-field pattern check (bench/core.py), and this is the hot path.
Key = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
# Finite numbers only: msgspec already refuses NaN/Infinity tokens; the bounds refuse 1e999.
Number = Annotated[float, msgspec.Meta(ge=-sys.float_info.max, le=sys.float_info.max)]
Count = Annotated[int, msgspec.Meta(ge=0)]

# Every value a record carries, extra fields and nested ones included, must be encodable by every
# encoder on its path: orjson (JSON frames, the shared snapshot, the history stream), msgpack
# (MessagePack frames) and PostgreSQL (jsonb, and bigint columns such as `trades`). msgspec keeps
# any JSON integer, so without this one 2**64 in an extra field failed every broadcast (issue 13).
# Integers: signed 64-bit, the range all three share (orjson and msgpack also take up to 2**64-1,
# PostgreSQL's bigint does not).
INT_MIN: Final = -(2**63)
INT_MAX: Final = 2**63 - 1
# Nesting: the record itself is level 1. orjson refuses to encode past 255 levels and a frame
# wraps a record in at most 4 more; 32 is far more than any desk record needs.
MAX_DEPTH: Final = 32
Text = Annotated[str, msgspec.Meta(max_length=256)]
Timestamp = Annotated[datetime, msgspec.Meta(tz=True)]  # RFC 3339 with an offset


class MarketData(msgspec.Struct, forbid_unknown_fields=False):
    """Schema of a `market_data:{SYMBOL}` payload (and cache key)."""

    symbol: Key
    last_price: Number
    bid_price: Number | None = None
    ask_price: Number | None = None
    volume_24h: Number | None = None
    high_24h: Number | None = None
    low_24h: Number | None = None
    updated_at: Timestamp | None = None


class Order(msgspec.Struct, forbid_unknown_fields=False):
    """Schema of an `orders:*` payload."""

    id: Key
    symbol: Key
    side: Literal["BUY", "SELL"]
    quantity: Number
    status: Text
    type: Text | None = None
    price: Number | None = None
    filled: Number | None = None
    created_at: Timestamp | None = None
    updated_at: Timestamp | None = None


class Position(msgspec.Struct, forbid_unknown_fields=False):
    """Schema of a `positions:{SYMBOL}` payload; quantity 0 closes the position."""

    symbol: Key
    quantity: Number
    side: Text | None = None
    entry_price: Number | None = None
    mark_price: Number | None = None
    unrealized_pnl: Number | None = None
    realized_pnl: Number | None = None
    liquidation_price: Number | None = None
    updated_at: Timestamp | None = None


class Account(msgspec.Struct, forbid_unknown_fields=False):
    """Schema of an `account:*` payload; it replaces the account whole."""

    total_balance: Number
    available_balance: Number | None = None
    margin_used: Number | None = None
    unrealized_pnl: Number | None = None
    realized_pnl: Number | None = None
    balances: dict[Annotated[str, msgspec.Meta(max_length=64)], Number] | None = None
    updated_at: Timestamp | None = None


class Strategy(msgspec.Struct, forbid_unknown_fields=False):
    """Schema of a `strategies:{ID}` payload."""

    id: Key
    status: Text
    name: Text | None = None
    pnl: Number | None = None
    trades: Count | None = None
    win_rate: Number | None = None
    updated_at: Timestamp | None = None


SCHEMAS: Final[dict[Channel, type[msgspec.Struct]]] = {
    Channel.MARKET_DATA: MarketData,
    Channel.ORDERS: Order,
    Channel.POSITIONS: Position,
    Channel.ACCOUNT: Account,
    Channel.STRATEGIES: Strategy,
}

# The field that names the entity inside its channel (the account is a single entity).
KEY_FIELDS: Final[dict[Channel, str | None]] = {
    Channel.MARKET_DATA: "symbol",
    Channel.ORDERS: "id",
    Channel.POSITIONS: "symbol",
    Channel.ACCOUNT: None,
    Channel.STRATEGIES: "id",
}


class _Spec(NamedTuple):
    schema: type[msgspec.Struct]
    decoder: msgspec.json.Decoder[Any]  # validates straight from bytes, faster than convert()
    key_field: str | None
    key_like_fields: tuple[str, ...]  # fields of type Key, checked against KEY_PATTERN
    known_fields: frozenset[str]


def _spec(channel: Channel) -> _Spec:
    schema = SCHEMAS[channel]
    key_like = tuple(name for name in ("id", "symbol") if name in schema.__struct_fields__)
    return _Spec(
        schema,
        msgspec.json.Decoder(schema),
        KEY_FIELDS[channel],
        key_like,
        frozenset(schema.__struct_fields__),
    )


_SPECS: Final = {channel: _spec(channel) for channel in Channel}


class Accepted(NamedTuple):
    """A valid record of `channel`, identified by `key` (None for the account)."""

    channel: Channel
    key: str | None
    record: Record


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a payload was refused: a short machine reason, the field if any, and a detail."""

    reason: Literal[
        "too_large",
        "bad_json",
        "not_object",
        "missing_field",
        "invalid_field",
        "unrepresentable_number",
        "unrepresentable_string",
        "too_deep",
    ]
    field: str | None
    detail: str


_json_decoder: Final = msgspec.json.Decoder()
_FIELD_AT: Final = re.compile(r"at `\$\.([A-Za-z0-9_\-]+)")
_MISSING: Final = re.compile(r"missing required field `([^`]+)`")


def parse_record(channel: Channel, payload: bytes | str, *, max_bytes: int) -> Accepted | Rejection:
    """Decode and validate one JSON payload for `channel`."""
    if len(payload) > max_bytes:
        return Rejection("too_large", None, f"payload of {len(payload)} bytes exceeds {max_bytes}")
    try:
        obj = _json_decoder.decode(payload)
    except msgspec.DecodeError as exc:
        return Rejection("bad_json", None, str(exc))
    except RecursionError:  # msgspec's guard against hostile nesting like "[[[[...."
        return Rejection("bad_json", None, "JSON is nested too deeply")
    if not isinstance(obj, dict):
        return _not_object(obj)
    spec = _SPECS[channel]
    try:
        spec.decoder.decode(payload)
    except msgspec.ValidationError as exc:
        return _rejection(str(exc))
    return _accept(channel, spec, obj)


def validate_record(channel: Channel, obj: object) -> Accepted | Rejection:
    """Validate an already-decoded JSON value (a cache key, a backend's reply) for `channel`."""
    if not isinstance(obj, dict):
        return _not_object(obj)
    spec = _SPECS[channel]
    try:
        msgspec.convert(obj, spec.schema, strict=True)
    except msgspec.ValidationError as exc:
        return _rejection(str(exc))
    return _accept(channel, spec, obj)


def _accept(channel: Channel, spec: _Spec, obj: dict[str, Any]) -> Accepted | Rejection:
    """Finish validating a schema-valid object: key patterns, field names, values, nulls."""
    for name in spec.key_like_fields:
        if not is_key(obj[name]):
            return Rejection("invalid_field", name, f"{name} must match {KEY_PATTERN}")
    record: Record = obj
    if None in obj.values() or not obj.keys() <= spec.known_fields:  # else: the fast path
        record = {}
        for name, value in obj.items():
            if value is None:
                continue
            if not is_key(name):  # an extra field's name becomes a dotted-path segment
                return Rejection(
                    "invalid_field", name[:64], f"field names must match {KEY_PATTERN}"
                )
            record[name] = value
    for name, value in record.items():
        # The common scalars inline (this is the hot path: ~0.5 us a record, bench/core.py);
        # everything else, and every doubt, goes to the full check.
        kind = type(value)
        if kind is float:
            if value - value == 0.0:  # finite: inf - inf and nan - nan are nan
                continue
        elif kind is str:
            if value.isascii() and "\x00" not in value:
                continue
        elif kind is int and INT_MIN <= value <= INT_MAX:
            continue
        reason = _unencodable(value, 2)
        if reason is not None:
            return Rejection(reason, name, _DETAILS[reason])
    return Accepted(channel, None if spec.key_field is None else record[spec.key_field], record)


_Unencodable = Literal[
    "unrepresentable_number", "unrepresentable_string", "too_deep", "invalid_field"
]
_DETAILS: Final[dict[str, str]] = {
    "unrepresentable_number": f"integers must be within [{INT_MIN}, {INT_MAX}], floats finite",
    "unrepresentable_string": "strings must be valid Unicode without NUL (\\u0000)",
    "too_deep": f"records may nest at most {MAX_DEPTH} levels",
    "invalid_field": "values must be JSON values",
}


def _unencodable(value: object, depth: int) -> _Unencodable | None:
    """Why `value`, at nesting level `depth`, cannot be encoded on every path; None if it can."""
    if isinstance(value, str):
        return None if _encodable_str(value) else "unrepresentable_string"
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return None if INT_MIN <= value <= INT_MAX else "unrepresentable_number"
    if isinstance(value, float):
        return None if math.isfinite(value) else "unrepresentable_number"
    if not isinstance(value, dict | list):
        return "invalid_field"  # a backend's decoder handed over something JSON has not
    if depth > MAX_DEPTH:
        return "too_deep"
    items: Iterable[object] = value
    if isinstance(value, dict):
        for key in value:
            if not isinstance(key, str):
                return "invalid_field"
            if not _encodable_str(key):
                return "unrepresentable_string"
        items = value.values()
    for item in items:
        reason = _unencodable(item, depth + 1)
        if reason is not None:
            return reason
    return None


def _encodable_str(text: str) -> bool:
    """No NUL (jsonb and text refuse it) and no lone surrogate (UTF-8 cannot hold one)."""
    if "\x00" in text:
        return False
    if text.isascii():
        return True
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def instant(stamp: str) -> datetime:
    """The instant of a validated RFC 3339 timestamp (`updated_at`, `created_at`)."""
    try:
        return datetime.fromisoformat(stamp)  # twice as fast; misses forms like "…t12:00:00z"
    except ValueError:
        return msgspec.convert(stamp, datetime)


def _not_object(obj: object) -> Rejection:
    return Rejection("not_object", None, f"expected a JSON object, got {type(obj).__name__}")


def _rejection(message: str) -> Rejection:
    missing = _MISSING.search(message)
    if missing:
        return Rejection("missing_field", missing.group(1), message)
    at = _FIELD_AT.search(message)
    return Rejection("invalid_field", at.group(1) if at else None, message)
