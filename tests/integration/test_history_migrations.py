"""History migrations on a populated database: rows logged before a migration survive it with
the API's answers unchanged, and the recorder's writes work on the migrated tables."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import psycopg
import pytest
from django.db import connection

from history.services import history_rows_write, staging_create
from history.stream_rows import StreamRow
from support.processes import run_command, scratch_database

pytestmark = [pytest.mark.integration, pytest.mark.slow]

T0 = datetime(2026, 5, 1, 23, 50, tzinfo=UTC)  # the rows span midnight: two day partitions
WRITER = "00c0ffee00c0ffee"

# Rows as the tables of migration 0002 held them: (table, typed columns, record, row key).
_TICK = "history_markettick (symbol, last_price, volume_24h)"


def _old_rows() -> list[tuple[str, str, tuple[Any, ...], dict[str, Any], str | None]]:
    rows: list[tuple[str, str, tuple[Any, ...], dict[str, Any], str | None]] = []
    spellings = [
        lambda t: t.isoformat(timespec="microseconds").replace("+00:00", "Z"),
        lambda t: t.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        lambda t: t.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        lambda t: t.astimezone(UTC).isoformat(timespec="microseconds"),  # +00:00: verbatim
        None,  # no updated_at: time is received_at
    ]
    for i in range(300):
        moment = T0 + timedelta(seconds=7 * i, microseconds=1000 * (i % 3) + (i % 2))
        symbol = ("BTCUSDT", "ETHUSDT")[i % 2]
        price: float | int = 50000 + i if i % 10 == 0 else 50000.5 + i  # ints stay ints
        record: dict[str, Any] = {"symbol": symbol, "last_price": price}
        if i % 4:
            record["volume_24h"] = 1000.25 + i
        if i % 7 == 0:
            record["venue"] = "X"
        spell = spellings[i % len(spellings)]
        if spell is not None:
            record["updated_at"] = spell(moment)
        key = f"{WRITER}-{i}" if i % 3 else None  # logged before row keys: none
        typed = (symbol, float(price), record.get("volume_24h"))
        rows.append(("market_data", _TICK, typed, record, key))
    rows.append((
        "orders", "history_orderevent (order_id, symbol, side, quantity, status)",
        ("o-1", "BTCUSDT", "BUY", 1.0, "NEW"),
        {"id": "o-1", "symbol": "BTCUSDT", "side": "BUY", "quantity": 1.0, "status": "NEW",
         "created_at": "2026-05-01T23:00:00.250Z"}, f"{WRITER}-1000",
    ))  # fmt: skip
    rows.append((
        "positions", "history_positionsnapshot (symbol, quantity)", ("BTCUSDT", 2.0),
        {"symbol": "BTCUSDT", "quantity": 2.0, "side": "LONG"}, None,
    ))  # fmt: skip
    rows.append((
        "account", "history_accountsnapshot (total_balance, balances)", (5.0, '{"USDT": 5.0}'),
        {"total_balance": 5.0, "balances": {"USDT": 5.0}}, None,
    ))  # fmt: skip
    rows.append((
        "strategies", "history_strategysnapshot (strategy_id, status, trades)",
        ("mm-1", "RUNNING", 42), {"id": "mm-1", "status": "RUNNING", "trades": 42}, None,
    ))  # fmt: skip
    return rows


def _populate_old(dsn: str) -> None:
    with psycopg.connect(dsn) as conn:
        for n, (_, target, typed, record, key) in enumerate(_old_rows(), start=1):
            received = T0 + timedelta(seconds=7 * n, microseconds=250)
            updated = record.get("updated_at")
            moment = datetime.fromisoformat(updated) if updated else received
            table, columns = target.split(" ", 1)
            names = ", ".join(
                [
                    *("stream_ms", "stream_seq", "seq", "received_at", "updated_at", "time"),
                    *("record", "row_key", columns.strip("()")),
                ]
            )
            marks = ", ".join(["%s"] * (8 + len(typed)))
            conn.execute(
                f"INSERT INTO {table} ({names}) VALUES ({marks})",  # noqa: S608
                [1_700_000_000_000 + n, n % 5, n, received, moment if updated else None,
                 moment, orjson.dumps(record).decode(), key, *typed],
            )  # fmt: skip
        # the minute candles, as the old recorder kept them: first/last by (time, id)
        conn.execute(
            """INSERT INTO history_minutecandle (symbol, bucket, open, open_time, open_id, high,
                   low, close, close_time, close_id, volume, ticks)
               SELECT symbol, b, (array_agg(last_price ORDER BY time, id))[1], min(time),
                      (array_agg(id ORDER BY time, id))[1], max(last_price), min(last_price),
                      (array_agg(last_price ORDER BY time DESC, id DESC))[1], max(time),
                      (array_agg(id ORDER BY time DESC, id DESC))[1],
                      (array_agg(volume_24h ORDER BY time DESC, id DESC))[1], count(*)
               FROM (SELECT *, date_bin('1 minute', time, '2000-01-01Z') AS b
                     FROM history_markettick) AS t
               GROUP BY symbol, b"""
        )


_READ_PAGES = """
import orjson
from datetime import timedelta
from history.selectors import candle_list, history_list
out = {}
for kind, symbol in %r:
    items, before = [], None
    while True:
        page = history_list(kind=kind, symbol=symbol, start=None, end=None, before=before, limit=7)
        items += page.items
        if (before := page.next) is None:
            break
    out[f"{kind}/{symbol}"] = items
for symbol in ("BTCUSDT", "ETHUSDT"):
    page = candle_list(symbol=symbol, step=timedelta(minutes=1), start=None, end=None,
                       before=None, limit=1000)
    out[f"candles/{symbol}"] = page.items
print(orjson.dumps(out).decode())
"""
_QUERIES = [
    ("market_data", "BTCUSDT"), ("market_data", "ETHUSDT"), ("market_data", None),
    ("orders", None), ("positions", "BTCUSDT"), ("account", None), ("strategies", "mm-1"),
]  # fmt: skip
_TABLES = {
    "market_data": "history_markettick", "orders": "history_orderevent",
    "positions": "history_positionsnapshot", "account": "history_accountsnapshot",
    "strategies": "history_strategysnapshot",
}  # fmt: skip


def _old_answers(dsn: str) -> dict[str, Any]:
    """What the API of migration 0002's schema answered: the record, seq, received_at."""
    answers: dict[str, Any] = {}
    with psycopg.connect(dsn) as conn:
        for kind, symbol in _QUERIES:
            key = "strategy_id" if kind == "strategies" else "symbol"
            where = "" if symbol is None else f"WHERE {key} = %(symbol)s"
            found = conn.execute(
                f"""SELECT record::text, seq, to_char(received_at AT TIME ZONE 'UTC',
                               'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
                    FROM {_TABLES[kind]} {where} ORDER BY time DESC, id DESC""",  # noqa: S608
                {"symbol": symbol},
            ).fetchall()
            answers[f"{kind}/{symbol}"] = [
                {**orjson.loads(record), "seq": seq, "received_at": received}
                for record, seq, received in found
            ]
        for symbol in ("BTCUSDT", "ETHUSDT"):
            found = conn.execute(
                """SELECT to_char(bucket AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
                          open, high, low, close, volume, ticks
                   FROM history_minutecandle WHERE symbol = %s ORDER BY bucket DESC""",
                [symbol],
            ).fetchall()
            answers[f"candles/{symbol}"] = [
                dict(
                    zip(
                        ("time", "open", "high", "low", "close", "volume", "ticks"),
                        row,
                        strict=True,
                    )
                )
                for row in found
            ]
    return answers


def test_a_populated_history_migrates_with_the_same_rows_and_answers() -> None:
    db = connection.settings_dict
    server = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}"
    with scratch_database(server, f"history_migrate_{uuid.uuid4().hex[:8]}") as dsn:
        env = {"DASHBOARD_SECRET_KEY": "test", "DASHBOARD_DATABASE_URL": dsn}
        # given a history written with the schema of migration 0002 (row keys, no partitions)
        run_command(["migrate", "history", "0002", "--no-input"], env=env)
        _populate_old(dsn)
        before = _old_answers(dsn)
        assert len(before["market_data/None"]) == 300
        # when the history migrates
        run_command(["migrate", "history", "--no-input"], env=env)
        # then every row is there, and the API answers as it did, page by page
        printed = run_command(["shell", "-c", _READ_PAGES % (_QUERIES,)], env=env)
        after = orjson.loads(printed.strip().splitlines()[-1])
        assert after.keys() == before.keys()
        for query, items in before.items():
            assert after[query] == items, query
        with psycopg.connect(dsn) as conn:
            days = conn.execute(
                "SELECT count(*) FROM pg_inherits WHERE inhparent = 'history_markettick'::regclass"
            ).fetchone()
            assert days == (2,)
            # and the recorder inserts a key once, whether it was migrated or is new: a migrated
            # row appended again (same row key), one delivered again (same entry id, no key)
            staging_create(conn=conn)
            first, second = _old_rows()[:2]
            again = [
                StreamRow(1_700_000_000_001, 1, "market_data", 1, T0 + timedelta(seconds=7,
                          microseconds=250), orjson.dumps(first[3]).decode()),
                StreamRow(1, 0, "market_data", 2, T0 + timedelta(seconds=14, microseconds=250),
                          orjson.dumps(second[3]).decode(), second[4]),
            ]  # fmt: skip
            assert first[4] is None
            assert second[4] is not None
            assert history_rows_write(conn=conn, rows=again) == {"market_data": 0}
            now = datetime.now(UTC)
            record = '{"symbol": "NEW", "last_price": 2.0}'
            fresh = [StreamRow(10**13, i, "market_data", i, now, record, f"{WRITER}-{10**6 + i}")
                     for i in (1, 2)]  # fmt: skip
            assert history_rows_write(conn=conn, rows=[*fresh, *fresh]) == {"market_data": 2}
            assert history_rows_write(conn=conn, rows=fresh) == {"market_data": 0}
            total = conn.execute("SELECT count(*) FROM history_markettick").fetchone()
            assert total == (302,)
