"""`tick_values`' fast path (the common tick, checked in C loops) gives what the field-by-field
path gives, and the `updated_at` shape check refuses what the rebuilt spellings cannot give back.

Whether either path stores what the JSONB split stores is tested against PostgreSQL in
tests/integration/test_history_tick_rows.py.
"""

from __future__ import annotations

import random
import struct
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from history.tick_rows import TICK_FIELDS, _tick_values_kept, tick_values

T0 = datetime(2026, 3, 14, 9, 26, 53, 589793, tzinfo=UTC)


def slow(record: dict[str, Any], received_at: datetime) -> object:
    """The field-by-field path on the same head `tick_values` computed."""
    split = tick_values(record, received_at)
    assert split is not None
    symbol, values = split
    return _tick_values_kept(record, symbol, values[:4])


def records() -> list[dict[str, Any]]:
    rng = random.Random(16)
    out: list[dict[str, Any]] = []
    for i in range(2000):
        record: dict[str, Any] = {"symbol": f"S{i % 7}"}
        for name in TICK_FIELDS:
            kind = rng.randrange(6)
            if kind == 0:
                continue  # absent
            if kind == 1:
                record[name] = struct.unpack("<d", rng.randbytes(8))[0]  # any exponent
            elif kind == 2:
                record[name] = rng.choice([0.0, -0.0, 1e15, -1e15, 1e16, 5e-324, 999_999.99])
            elif kind == 3:
                record[name] = None  # a JSON null
            else:
                record[name] = round(rng.uniform(-1e6, 1e6), rng.randrange(6))
        if rng.random() < 0.8:
            stamp = T0 + timedelta(microseconds=rng.randrange(10**10))
            spec = rng.choice(["microseconds", "milliseconds", "seconds"])
            record["updated_at"] = stamp.isoformat(timespec=spec).replace("+00:00", "Z")
        if rng.random() < 0.1:
            record["venue"] = "X"
        if all(v - v == 0.0 for v in record.values() if type(v) is float):  # finite, as JSON
            out.append(record)
    return out


def test_the_fast_path_gives_what_the_field_by_field_path_gives() -> None:
    fast = 0
    for record in records():
        split = tick_values(record, T0)
        assert split is not None
        assert repr(split[1]) == repr(slow(record, T0)[1]), record  # type: ignore[index]
        fast += split[1][-1] is None
    assert fast > 200  # the fast path was taken (no `extra`)


@pytest.mark.parametrize(
    "updated_at",
    [
        "2026-03-14 09:26:53.589793Z",
        "2026-03-14x09:26:53Z",
        "2026-03-14T09-26-53Z",
        "2026-03-14T09:26:53,589Z",
        "2026-03-14T09:26:53.589793z",
        "2026-03-14T09:26:53.5897930",
        "20260314T092653.589793Z",
        "2026-03-14T09:26:53.58a793Z",
        "2026-03-14T09:26:53.\uff1589793Z",  # a fullwidth digit
        "2026-W11-6T09:26:53Z",
        "2026-03-14T24:00:00Z",
        "2026-03-14T09:26:53.5897Z",
        "2026-03-14T09:26:53.589793+00:00",
    ],
)
def test_an_updated_at_not_in_a_rebuilt_spelling_takes_the_jsonb_way(updated_at: str) -> None:
    assert tick_values({"symbol": "A", "last_price": 1.5, "updated_at": updated_at}, T0) is None


@pytest.mark.parametrize(
    ("updated_at", "code"),
    [
        ("2026-03-14T09:26:53.589793Z", 0),
        ("2026-03-14T09:26:53.589Z", 1),
        ("2026-03-14T09:26:53Z", 2),
    ],
)
def test_the_rebuilt_spellings_are_typed(updated_at: str, code: int) -> None:
    split = tick_values({"symbol": "A", "last_price": 1.5, "updated_at": updated_at}, T0)
    assert split is not None
    assert split[1][0] == datetime.fromisoformat(updated_at)
    assert split[1][3] == code
