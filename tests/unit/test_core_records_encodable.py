"""Every accepted record can be encoded by every encoder on its path (issue 13: one integer past
64 bits in an extra field stopped every broadcast). Refused values name the field and a reason."""

from __future__ import annotations

import json
import math
from typing import Any

import msgpack
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.core.records import Accepted, Channel, Rejection, parse_record, validate_record
from shared.core.values import INT_MAX, INT_MIN, MAX_DEPTH

MAX = 65_536
BASE = {"symbol": "ZZ", "last_price": 1.0}


def nested(levels: int, leaf: object = 1) -> object:
    """A value that makes a record `levels` deep when held by one of its fields."""
    value = leaf
    for _ in range(levels - 1):
        value = [value]
    return value


def both(record: dict[str, Any]) -> list[Accepted | Rejection]:
    """The record through both entry points: raw JSON text (pub/sub, cache) and decoded."""
    return [
        parse_record(Channel.MARKET_DATA, json.dumps(record), max_bytes=MAX),
        parse_record(Channel.MARKET_DATA, json.dumps(record).encode(), max_bytes=MAX),
        validate_record(Channel.MARKET_DATA, record),
    ]


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ({"venue_seq": 100000000000000000000}, "unrepresentable_number"),  # the probe
        ({"venue_seq": INT_MAX + 1}, "unrepresentable_number"),
        ({"venue_seq": INT_MIN - 1}, "unrepresentable_number"),
        ({"meta": {"seqs": [1, 2**70]}}, "unrepresentable_number"),
        ({"meta": [{"a": {"b": -(10**30)}}]}, "unrepresentable_number"),
        ({"note": "a\u0000b"}, "unrepresentable_string"),
        ({"meta": {"k\u0000": 1}}, "unrepresentable_string"),
        ({"meta": ["x", {"y": "\u0000"}]}, "unrepresentable_string"),
        ({"deep": nested(MAX_DEPTH + 1)}, "too_deep"),
        ({"deep": nested(300)}, "too_deep"),  # past orjson's own limit of 255
    ],
)
def test_values_no_encoder_can_carry_are_refused_by_field(
    extra: dict[str, Any], reason: str
) -> None:
    field = next(iter(extra))
    for result in both({**BASE, **extra}):
        assert isinstance(result, Rejection), result
        assert (result.reason, result.field) == (reason, field)


@pytest.mark.parametrize(
    "extra",
    [
        {"venue_seq": INT_MAX},
        {"venue_seq": INT_MIN},
        {"deep": nested(MAX_DEPTH)},
        {"note": "1234567890123456789012345"},  # digits in a string are not a number
        {"note": "\\u0000"},  # an escaped backslash, not a NUL
        {"note": "Zürich 東京 🚀"},
    ],
)
def test_values_at_the_limits_are_accepted(extra: dict[str, Any]) -> None:
    for result in both({**BASE, **extra}):
        assert isinstance(result, Accepted), result


def test_a_typed_integer_past_bigint_is_refused() -> None:
    payload = {"id": "s1", "status": "RUNNING", "trades": INT_MAX + 1}
    result = parse_record(Channel.STRATEGIES, orjson.dumps(payload), max_bytes=MAX)
    assert isinstance(result, Rejection)
    assert (result.reason, result.field) == ("unrepresentable_number", "trades")


def test_a_text_field_holding_nul_is_refused() -> None:
    payload = {"id": "s1", "status": "RUN\u0000NING"}
    result = parse_record(Channel.STRATEGIES, orjson.dumps(payload), max_bytes=MAX)
    assert isinstance(result, Rejection)
    assert (result.reason, result.field) == ("unrepresentable_string", "status")


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ({"x": math.nan}, "unrepresentable_number"),  # orjson would send null: a deletion
        ({"x": [math.inf]}, "unrepresentable_number"),
        ({"x": "\ud800"}, "unrepresentable_string"),  # a lone surrogate: not UTF-8
        ({"x": {1: 2}}, "invalid_field"),
        ({"x": (1, 2)}, "invalid_field"),
        ({"x": b"bytes"}, "invalid_field"),
    ],
)
def test_decoded_values_json_cannot_hold_are_refused(extra: dict[str, Any], reason: str) -> None:
    result = validate_record(Channel.MARKET_DATA, {**BASE, **extra})
    assert isinstance(result, Rejection)
    assert (result.reason, result.field) == (reason, "x")


# Any JSON-like value, well past what encoders accept: huge integers, non-finite floats, any
# code point (surrogates and NUL included), deep nesting.
leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.sampled_from([INT_MIN - 1, INT_MIN, INT_MAX, INT_MAX + 1, 2**64 - 1, 2**64]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(st.characters(codec=None, exclude_categories=()), max_size=8),
)
json_values = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(
            st.text(st.characters(exclude_categories=()), max_size=4), inner, max_size=3
        ),
    ),
    max_leaves=40,
)
deep_values = st.integers(1, 300).map(nested)


def assert_encodable(record: dict[str, Any]) -> None:
    """Every frame and row the record travels in encodes, and decodes back to the same record."""
    for wrapper in (
        {"type": "update", "seq": 1, "changes": {"market_data.ZZ": record}},
        {"type": "snapshot", "seq": 1, "data": {"market_data": {"ZZ": record}}},
        ["market_data", 1, 1.5, record],  # the history stream row
    ):
        assert orjson.loads(orjson.dumps(wrapper)) == wrapper
        assert msgpack.unpackb(msgpack.packb(wrapper), strict_map_key=False) == wrapper
    assert b"\\u0000" not in orjson.dumps(record)  # jsonb cannot store NUL


@settings(max_examples=500, deadline=None)
@given(extra=st.dictionaries(st.sampled_from(["a", "b_2", "venue"]), json_values | deep_values))
def test_any_accepted_record_encodes_with_orjson_and_msgpack(extra: dict[str, Any]) -> None:
    record = {**BASE, **extra}
    decoded = validate_record(Channel.MARKET_DATA, record)
    if isinstance(decoded, Accepted):
        assert_encodable(decoded.record)
    try:  # as a producer would send it; JSON text cannot carry NaN or lone surrogates
        text = json.dumps(record, allow_nan=False).encode("utf-8")
    except (ValueError, UnicodeEncodeError):
        return
    parsed = parse_record(Channel.MARKET_DATA, text, max_bytes=10**7)
    if isinstance(parsed, Accepted):
        assert_encodable(parsed.record)
