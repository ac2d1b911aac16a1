"""History rows for tests: built as the worker logs them, stored through the recorder's path."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from typing import Any

import orjson
from django.db import connection

from history.selectors import rfc3339
from history.services import history_rows_write, staging_create
from history.stream_rows import StreamRow

WRITER = "7e57000000000001"
_n = itertools.count(1)


def stream_row(channel: str, record: dict[str, Any], received_at: datetime) -> StreamRow:
    """One entry as a current worker appends it (with a row key)."""
    n = next(_n)
    return StreamRow(
        stream_ms=n,
        stream_seq=0,
        channel=channel,
        seq=n,
        received_at=received_at,
        record_json=orjson.dumps(record).decode(),
        row_key=f"{WRITER}-{n}",
    )


def tick_row(
    symbol: str, moment: datetime, price: float, *, volume: float | None = None
) -> StreamRow:
    """A tick stamped `moment` by its producer, received a millisecond later."""
    record: dict[str, Any] = {"symbol": symbol, "last_price": price, "updated_at": rfc3339(moment)}
    if volume is not None:
        record["volume_24h"] = volume
    return stream_row("market_data", record, moment + timedelta(milliseconds=1))


def store(rows: list[StreamRow]) -> dict[str, int]:
    """Write rows through the recorder's write path on the test's own connection.

    In the test's transaction (its savepoint), so that the test database rolls them back.
    """
    with connection.cursor() as cursor:
        # Open the test's transaction first: on an idle connection psycopg's transaction()
        # would BEGIN and COMMIT one of its own instead of a savepoint in the test's.
        cursor.execute("SELECT 1")
    conn = connection.connection
    staging_create(conn=conn)
    return history_rows_write(conn=conn, rows=rows)


def api_item(row: StreamRow) -> dict[str, Any]:
    """What the history API returns for a stored row."""
    record: dict[str, Any] = orjson.loads(row.record_json)
    return {**record, "seq": row.seq, "received_at": rfc3339(row.received_at)}


def history_truncate() -> None:
    """Empty the history tables (Django's flush skips them: they are `managed = False`)."""
    from history.models import HISTORY_MODELS, MinuteCandle

    tables = [m._meta.db_table for m in (*HISTORY_MODELS.values(), MinuteCandle)]
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {', '.join(tables)}")
