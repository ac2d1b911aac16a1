"""Parsing history stream entries: a row or a named reason, never an exception."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from history.stream_rows import Malformed, StreamRow, parse_entry, split_entry_id

TICK = {"symbol": "BTCUSDT", "last_price": 50100.5, "updated_at": "2026-05-01T12:00:00Z"}


def entry(value: object) -> dict[bytes, bytes]:
    return {b"r": orjson.dumps(value)}


def test_a_well_formed_entry_becomes_a_row() -> None:
    row = parse_entry(b"1714564800000-7", entry(["market_data", 12, 1714564800.25, TICK]))
    assert row == StreamRow(
        stream_ms=1714564800000,
        stream_seq=7,
        channel="market_data",
        seq=12,
        received_at=datetime(2024, 5, 1, 12, 0, 0, 250000, tzinfo=UTC),
        record_json=orjson.dumps(TICK).decode(),
    )
    assert row.entry_id == "1714564800000-7"
    assert row.row_key is None  # logged before row keys: the entry id is its only replay key


def test_the_writers_row_key_is_kept() -> None:
    row = parse_entry(b"1-0", entry(["market_data", 12, 1714564800.25, TICK, "9f3a0c1d-41"]))
    assert isinstance(row, StreamRow)
    assert row.row_key == "9f3a0c1d-41"
    assert row.key() == (0x9F3A0C1D, 41)


def test_the_replay_key_is_the_row_key_in_two_integers_or_the_entry_id() -> None:
    keyed = parse_entry(b"1-0", entry(["market_data", 1, 1.0e9, TICK, "ffffffffffffffff-7"]))
    assert isinstance(keyed, StreamRow)
    assert keyed.key() == (-1, 7)  # the 64-bit writer id, stored as a signed bigint
    legacy = parse_entry(b"1714564800000-7", entry(["market_data", 1, 1.0e9, TICK]))
    assert isinstance(legacy, StreamRow)
    assert legacy.key() == (0, 1714564800000 << 20 | 7)


def test_extra_fields_pass_through_and_nulls_are_dropped() -> None:
    record = {**TICK, "venue": "X", "bid_price": None}
    row = parse_entry(b"1-0", entry(["market_data", 1, 1714564800, record]))
    assert isinstance(row, StreamRow)
    assert orjson.loads(row.record_json) == {**TICK, "venue": "X"}


@pytest.mark.parametrize(
    ("entry_id", "fields", "reason"),
    [
        (b"nope", entry(["market_data", 1, 1.0e9, TICK]), "bad_entry_id"),
        (b"1-2-3", entry(["market_data", 1, 1.0e9, TICK]), "bad_entry_id"),
        (b"99999999999999999999-0", entry(["market_data", 1, 1.0e9, TICK]), "bad_entry_id"),
        (b"1-0", {b"x": b"1"}, "bad_fields"),
        (b"1-0", {**entry(["market_data", 1, 1.0e9, TICK]), b"y": b"1"}, "bad_fields"),
        (b"1-0", {b"r": b"{not json"}, "bad_json"),
        (b"1-0", entry({"channel": "market_data"}), "not_a_row"),
        (b"1-0", entry(["market_data", 1, 1.0e9]), "not_a_row"),
        (b"1-0", entry(["trades", 1, 1.0e9, TICK]), "unknown_channel"),
        (b"1-0", entry([7, 1, 1.0e9, TICK]), "unknown_channel"),
        (b"1-0", entry(["market_data", -1, 1.0e9, TICK]), "bad_seq"),
        (b"1-0", entry(["market_data", 1.5, 1.0e9, TICK]), "bad_seq"),
        (b"1-0", entry(["market_data", True, 1.0e9, TICK]), "bad_seq"),
        (b"1-0", entry(["market_data", 2**63, 1.0e9, TICK]), "bad_seq"),
        (b"1-0", entry(["market_data", 1, "now", TICK]), "bad_received_at"),
        (b"1-0", entry(["market_data", 1, 1e300, TICK]), "bad_received_at"),
        (b"1-0", entry(["market_data", 1, 0, TICK]), "bad_received_at"),
        (b"1-0", entry(["market_data", 1, 1.0e9, {"symbol": "BTCUSDT"}]), "record_missing_field"),
        (
            b"1-0",
            entry(["market_data", 1, 1.0e9, {**TICK, "last_price": "1"}]),
            "record_invalid_field",
        ),
        (b"1-0", entry(["market_data", 1, 1.0e9, [1, 2]]), "record_not_object"),
        (b"1-0", entry(["market_data", 1, 1.0e9, TICK, 7]), "bad_row_key"),
        (b"1-0", entry(["market_data", 1, 1.0e9, TICK, "k\n"]), "bad_row_key"),
        (b"1-0", entry(["market_data", 1, 1.0e9, TICK, "k" * 65]), "bad_row_key"),
        (b"1-0", entry(["market_data", 1, 1.0e9, TICK, "not-a-key"]), "bad_row_key"),
        (b"1-0", entry(["market_data", 1, 1.0e9, TICK, "0-1"]), "bad_row_key"),  # legacy's
        (b"1-0", entry(["market_data", 1, 1.0e9, TICK, "1ffffffffffffffff-1"]), "bad_row_key"),
        (b"1-0", entry(["market_data", 1, 1.0e9, TICK, "1-9223372036854775808"]), "bad_row_key"),
        (b"1-1048576", entry(["market_data", 1, 1.0e9, TICK]), "bad_entry_id"),  # no legacy key
        (b"8796093022208-0", entry(["market_data", 1, 1.0e9, TICK]), "bad_entry_id"),
        (b"1-0", entry(["market_data", 1, 1.0e9, TICK, "k", "extra"]), "not_a_row"),
    ],
)
def test_malformed_entries_are_named(
    entry_id: bytes, fields: dict[bytes, bytes], reason: str
) -> None:
    parsed = parse_entry(entry_id, fields)
    assert isinstance(parsed, Malformed)
    assert parsed.reason == reason


@given(st.binary(max_size=200), st.binary(max_size=30))
def test_any_bytes_parse_or_are_malformed(raw: bytes, entry_id: bytes) -> None:
    assert isinstance(parse_entry(entry_id, {b"r": raw}), StreamRow | Malformed)


def test_split_entry_id() -> None:
    assert split_entry_id("1714564800000-3") == (1714564800000, 3)
    assert split_entry_id("1714564800000") is None
    assert split_entry_id("-3") is None
