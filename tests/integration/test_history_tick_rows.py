"""Ticks split in Python (`history/tick_rows.py`, typed COPY) store what the JSONB split stores.

Each case is written twice into the same empty tables: once through the JSONB staging table
(PostgreSQL splits the record: `services.jsonb_rows_copy` + `staged_rows_write`, the path every
tick took before) and once through the recorder's write (`history_rows_write`, which splits a
typical tick in Python); every column of every row — `extra` included, floats compared by their
exact repr (so -0.0 and 0.0 differ) — and every minute candle must be equal. Symbols and
writers are compared by name and 64-bit value: the rolled-back savepoint used up their ids.
"""

from __future__ import annotations

import random
import struct
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import psycopg
import pytest
from django.db import connection

from history.services import (
    history_rows_write,
    jsonb_rows_copy,
    rows_split,
    staged_rows_write,
    staging_create,
)
from history.stream_rows import StreamRow

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

T0 = datetime(2026, 3, 14, 9, 26, 53, 589793, tzinfo=UTC)
BIG = 2**63 - 1

_ROWS = """
SELECT y.name, t.time, (SELECT writer FROM history_writer WHERE id = t.writer_id), t.n, t.seq,
       t.received_us, t.received_at, t.updated_format, t.extra::text,
       t.last_price, t.bid_price, t.ask_price, t.volume_24h, t.high_24h, t.low_24h
FROM history_markettick t JOIN history_symbol y ON y.id = t.symbol_id ORDER BY t.n, t.time
"""
_CANDLES = """
SELECT y.name, c.bucket, c.open, c.open_time, c.open_n, c.high, c.low, c.close, c.close_time,
       c.close_n, c.volume, c.ticks,
       (SELECT writer FROM history_writer WHERE id = c.open_writer),
       (SELECT writer FROM history_writer WHERE id = c.close_writer)
FROM history_minutecandle c JOIN history_symbol y ON y.id = c.symbol_id ORDER BY 1, 2
"""


def row(n: int, record: dict[str, Any], *, received_at: datetime | None = None) -> StreamRow:
    return StreamRow(
        stream_ms=1_700_000_000_000 + n,
        stream_seq=0,
        channel="market_data",
        seq=n,
        received_at=received_at or T0 + timedelta(milliseconds=n),
        record_json=orjson.dumps(record).decode(),
        row_key=f"1-{n}",
    )


def tick(**fields: Any) -> dict[str, Any]:
    return {"symbol": "BTCUSDT", "last_price": 50_000.5, **fields}


def edge_records() -> list[tuple[dict[str, Any], datetime | None]]:
    """Values at the float and int64 edges, every updated_at spelling, extras, nulls."""
    at = "2026-03-14T09:26:53.589793Z"
    cases: list[tuple[dict[str, Any], datetime | None]] = []
    floats = [
        0.0,
        -0.0,
        0.1,
        1.5e-7,
        2.5e-5,
        5e-324,
        2.2250738585072014e-308,
        1e15,
        1e15 + 0.5,
        9_999_999_999_999_998.0,
        1e16,
        -1e16,
        1.2345e20,
        1e22,
        1.7976931348623157e308,
        -1.7976931348623157e308,
        123456789.123,
        0.30000000000000004,
    ]
    for i, value in enumerate(floats):
        cases.append((tick(last_price=value, bid_price=-value, updated_at=at), None))
        cases.append((tick(volume_24h=value, high_24h=value, updated_at=at, n=i), None))
    ints = [0, 1, -1, 50_000, 2**53, 2**53 + 1, BIG, -BIG - 1, 10**18]
    for value in ints:
        cases.append((tick(last_price=value, ask_price=value, low_24h=-value, updated_at=at), None))
    spellings = [
        "2026-03-14T09:26:53.589793Z",
        "2026-03-14T09:26:53.589000Z",
        "2026-03-14T09:26:53.000000Z",
        "2026-03-14T09:26:53.589Z",
        "2026-03-14T09:26:53.000Z",
        "2026-03-14T09:26:53Z",
        "2026-03-14T00:00:00Z",
        "2026-03-14T09:26:53.5Z",
        "2026-03-14T09:26:53.58979312Z",
        "2026-03-14T09:26:53.589793+00:00",
        "2026-03-14T10:26:53.589793+01:00",
        "2026-03-14t09:26:53.589793z",
        "2026-03-14 09:26:53.589793Z",
        "2026-03-14T24:00:00Z",
        "2016-12-31T23:59:60Z",
        "2024-02-29T12:00:00.123Z",
        "0001-01-01T00:00:00Z",
        "9999-12-31T23:59:59.999999Z",
    ]
    cases += [(tick(updated_at=s), None) for s in spellings]
    cases += [
        (tick(), None),  # no updated_at: filed under received_at
        (tick(updated_at=at), T0 + timedelta(minutes=36)),  # received_us does not fit
        (tick(updated_at=at), T0 - timedelta(minutes=36)),
        (tick(updated_at=at), T0 + timedelta(minutes=35)),
        (tick(updated_at=at), T0 - timedelta(microseconds=1)),
        (tick(updated_at=at, bid_price=None, ask_price=None), None),  # JSON nulls
        (tick(updated_at=at, venue="X", depth={"bids": [[1.5, 2]], "n": 1e16}, flag=True), None),
        (tick(updated_at=at, note="é ☃", empty=""), None),
        ({"last_price": 1.5, "symbol": "ETHUSDT", "updated_at": at}, None),  # key order
        (tick(updated_at=at, symbol=5), None),  # not a string: the JSONB way (refused there)
        (tick(updated_at=at, bid_price="1.5"), None),  # a string number: the JSONB way
        (tick(updated_at=None), None),
    ]
    return cases


def random_records(count: int) -> list[tuple[dict[str, Any], datetime | None]]:
    """Floats from random bit patterns (every exponent), finite only."""
    rng = random.Random(16)
    cases: list[tuple[dict[str, Any], datetime | None]] = []
    while len(cases) < count:
        values = [struct.unpack("<d", rng.randbytes(8))[0] for _ in range(6)]
        if not all(v - v == 0.0 for v in values):
            continue
        names = ("last_price", "bid_price", "ask_price", "volume_24h", "high_24h", "low_24h")
        moment = T0 + timedelta(microseconds=rng.randrange(10**11))
        stamp = moment.isoformat(timespec=rng.choice(["microseconds", "milliseconds", "seconds"]))
        record = {"symbol": f"S{len(cases) % 7}", **dict(zip(names, values, strict=True))}
        cases.append(({**record, "updated_at": stamp.replace("+00:00", "Z")}, None))
    return cases


def snapshot(cursor: psycopg.Cursor[Any]) -> tuple[list[str], list[str]]:
    cursor.execute(_ROWS)
    rows = [repr(r) for r in cursor.fetchall()]
    cursor.execute(_CANDLES)
    return rows, [repr(r) for r in cursor.fetchall()]


def both_ways(rows: list[StreamRow]) -> tuple[tuple[list[str], list[str]], ...]:
    """What each path stores for `rows` (each in a savepoint rolled back)."""
    with connection.cursor() as django_cursor:
        django_cursor.execute("SELECT 1")  # open the test's transaction (see history_rows)
    conn = connection.connection
    staging_create(conn=conn)
    results = []
    for typed in (False, True):
        with conn.transaction(force_rollback=True), conn.cursor() as cursor:
            if typed:
                history_rows_write(conn=conn, rows=rows)
            else:
                jsonb_rows_copy(cursor, rows)
                staged_rows_write(cursor, set())
            results.append(snapshot(cursor))
    return tuple(results)


def assert_same(typed: tuple[list[str], list[str]], jsonb: tuple[list[str], list[str]]) -> None:
    for got, want in zip(typed, jsonb, strict=True):
        assert len(got) == len(want)
        assert [(g, w) for g, w in zip(got, want, strict=True) if g != w] == []


def test_edge_values_store_the_same_both_ways() -> None:
    rows = [row(n, r, received_at=at) for n, (r, at) in enumerate(edge_records(), start=1)]
    ticks, others = rows_split(rows)
    assert len(ticks) > 60  # the typical ones took the typed path
    assert len(others) >= 10  # and every odd spelling the JSONB one
    jsonb, typed = both_ways(rows)
    assert len(jsonb[0]) == len(rows)
    assert_same(typed, jsonb)


def test_random_floats_store_the_same_both_ways() -> None:
    rows = [row(n, r) for n, (r, _) in enumerate(random_records(3000), start=1)]
    ticks, others = rows_split(rows)
    assert (len(ticks), len(others)) == (3000, 0)
    jsonb, typed = both_ways(rows)
    assert len(jsonb[0]) == 3000
    assert len(jsonb[1]) > 100  # candles of 7 symbols over ~28 hours
    assert_same(typed, jsonb)


def write_one_way(record: dict[str, Any], *, typed: bool) -> None:
    with connection.cursor() as django_cursor:
        django_cursor.execute("SELECT 1")
    conn = connection.connection
    staging_create(conn=conn)
    with conn.transaction(force_rollback=True):
        if typed:
            history_rows_write(conn=conn, rows=[row(1, record)])
        else:
            with conn.cursor() as cursor:
                jsonb_rows_copy(cursor, [row(1, record)])
                staged_rows_write(cursor, set())


@pytest.mark.parametrize("typed", [False, True])
@pytest.mark.parametrize(
    "record",
    [
        tick(bid_price="abc"),
        tick(updated_at=5),
        tick(venue="a\u0000b"),
        tick(symbol="a\u0000"),
    ],
)
def test_a_value_postgresql_refuses_fails_the_same_both_ways(
    record: dict[str, Any], *, typed: bool
) -> None:
    with pytest.raises(psycopg.errors.DataError):
        write_one_way(record, typed=typed)


def test_repeated_keys_are_written_once() -> None:
    with connection.cursor() as django_cursor:
        django_cursor.execute("SELECT 1")
    conn = connection.connection
    staging_create(conn=conn)
    at = "2026-03-14T09:26:53.589793Z"
    batch = [row(n, tick(updated_at=at, last_price=float(n))) for n in range(1, 101)]
    with conn.transaction(force_rollback=True):
        assert history_rows_write(conn=conn, rows=batch + batch[:10]) == {"market_data": 100}
        assert history_rows_write(conn=conn, rows=batch) == {"market_data": 0}
        # a replay mixing both paths: the typed rows and an odd spelling, all known
        odd = row(200, tick(updated_at="2026-03-14T09:26:53.589793+00:00"))
        assert history_rows_write(conn=conn, rows=[odd]) == {"market_data": 1}
        assert history_rows_write(conn=conn, rows=[*batch[50:], odd]) == {"market_data": 0}
        with conn.cursor() as cursor:
            cursor.execute("SELECT sum(ticks) FROM history_minutecandle")
            assert cursor.fetchone() == (101,)


def test_a_replay_behind_newer_rows_is_found_and_a_new_row_at_the_latest_time_is_not() -> None:
    # Only ticks at or before their symbol's latest stored time have their key looked up
    # (`batch_sql.LATEST_TIMES`): the others cannot be stored yet.
    with connection.cursor() as django_cursor:
        django_cursor.execute("SELECT 1")
    conn = connection.connection
    staging_create(conn=conn)

    def at(second: int) -> str:
        return f"2026-03-14T09:27:{second:02d}.000001Z"

    def tick_of(n: int, symbol: str, second: int) -> StreamRow:
        return row(n, tick(symbol=symbol, updated_at=at(second), last_price=float(n)))

    # given ticks of A and B stored, then later ticks of A only
    first = [tick_of(s, "A", s) for s in range(1, 11)] + [
        tick_of(100 + s, "B", s) for s in range(1, 11)
    ]
    later = [tick_of(s, "A", s) for s in range(11, 21)]
    with conn.transaction(force_rollback=True), conn.cursor() as cursor:
        assert history_rows_write(conn=conn, rows=first) == {"market_data": 20}
        assert history_rows_write(conn=conn, rows=later) == {"market_data": 10}
        # when a batch mixes replays (behind A's latest, at B's latest) with new ticks (after
        # each symbol's latest, and one of B at its latest time under a new key)
        mixed = [
            first[4],  # A at 5
            first[19],  # B at 10, B's latest
            later[9],  # A at 20, A's latest
            tick_of(111, "B", 11),
            tick_of(21, "A", 21),
            tick_of(110_000, "B", 10),
        ]
        # then only the new ones are inserted, once each, and the candles count each tick once
        assert history_rows_write(conn=conn, rows=mixed) == {"market_data": 3}
        assert history_rows_write(conn=conn, rows=mixed) == {"market_data": 0}
        cursor.execute("SELECT sum(ticks), count(*) FROM history_minutecandle")
        assert cursor.fetchone() == (33, 2)
        cursor.execute("SELECT count(*) FROM history_markettick")
        assert cursor.fetchone() == (33,)
