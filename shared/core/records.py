"""The five record kinds of contract 3.1 and their strict validation.

A payload becomes either an `Accepted` record or a `Rejection` naming the field and the reason;
no exception escapes `parse_record`. Validation is msgspec's (strict: a number sent as a string,
a boolean for a number, NaN/Infinity or an epoch number for a timestamp are rejected, never
coerced). The stored record is the payload's own JSON object, extra fields included, with
`null` fields dropped (a null field and an absent one mean the same thing on the wire, where
`null` deletes a path). What a value may be — keys, numbers, strings, nesting — is
`shared/core/values.py`; this module is the schemas and the validation that applies them.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Final, Literal, NamedTuple

import msgspec

from shared.core.values import INT_MAX, INT_MIN, UNENCODABLE_DETAILS, unencodable

# The key rule, re-exported for realtime/protocol.py and aggregation/ingest.py, which import it
# from here; new code imports it from shared/core/values.py.
from shared.core.values import KEY_PATTERN as KEY_PATTERN
from shared.core.values import is_key as is_key

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

# Checked against KEY_PATTERN by `validate_record` itself: Python's `re` on one field costs a
# third of msgspec's per-field pattern check (bench/core.py), and this is the hot path.
Key = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
# Finite numbers only: msgspec already refuses NaN/Infinity tokens; the bounds refuse 1e999.
Number = Annotated[float, msgspec.Meta(ge=-sys.float_info.max, le=sys.float_info.max)]
Count = Annotated[int, msgspec.Meta(ge=0)]

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
        reason = unencodable(value, 2)
        if reason is not None:
            return Rejection(reason, name, UNENCODABLE_DETAILS[reason])
    return Accepted(channel, None if spec.key_field is None else record[spec.key_field], record)


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
