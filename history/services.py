"""Writes to the history tables: the recorder's batch write and retention.

The batch write runs on a plain psycopg 3 connection (not Django's): COPY into a TEMP staging
table, then one `INSERT ... SELECT ... ON CONFLICT DO NOTHING` per table, all in one
transaction. The typed columns are extracted from the JSONB record by PostgreSQL itself, so the
Python side only streams rows; the unique stream entry id makes a replayed batch harmless, and
the unique `row_key` a batch the worker appended twice (ON CONFLICT DO NOTHING covers both).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

import psycopg
from django.db import connection, models
from psycopg import sql

from history.models import CANDLE_ORIGIN, HISTORY_MODELS, HistoryRow, MarketTick, MinuteCandle
from history.stream_rows import StreamRow

STAGING_TABLE: Final = "history_staging"
_CREATE_STAGING: Final = sql.SQL(
    """CREATE TEMP TABLE IF NOT EXISTS {} (
        stream_ms bigint NOT NULL,
        stream_seq bigint NOT NULL,
        channel text NOT NULL,
        seq bigint NOT NULL,
        received_at timestamptz NOT NULL,
        record jsonb NOT NULL,
        row_key text
    ) ON COMMIT DELETE ROWS"""
).format(sql.Identifier(STAGING_TABLE))
_COPY: Final = sql.SQL(
    "COPY {} (stream_ms, stream_seq, channel, seq, received_at, record, row_key) FROM STDIN"
).format(sql.Identifier(STAGING_TABLE))
# A value PostgreSQL refuses although the record passed validation: a string holding \u0000
# (jsonb and text cannot store it), an integer past bigint, a timestamp past its range.
# Retrying cannot help such a row, so the batch is split until the row is isolated.
_ROW_ERRORS: Final = (psycopg.errors.DataError, psycopg.errors.IntegrityError)
# 10,000 rows per DELETE: ~50 ms each on this machine class, so no lock is held for long and
# autovacuum keeps up between statements.
PRUNE_BATCH: Final = 10_000


def _extract(model: type[HistoryRow], field: models.Field[object, object]) -> sql.Composable:
    """The SQL expression reading one typed column out of the staged record."""
    key = sql.Literal(model.record_key(field.name))
    text = sql.SQL("s.record->>{}").format(key)
    if isinstance(field, models.FloatField):
        return sql.SQL("({})::double precision").format(text)
    if isinstance(field, models.BigIntegerField):
        return sql.SQL("({})::bigint").format(text)
    if isinstance(field, models.DateTimeField):
        return sql.SQL("({})::timestamptz").format(text)
    if isinstance(field, models.JSONField):
        return sql.SQL("s.record->{}").format(key)
    if isinstance(field, models.CharField | models.TextField):
        return text
    raise TypeError(f"no extraction for {type(field).__name__} {model.__name__}.{field.name}")


def _insert_statement(channel: str, model: type[HistoryRow]) -> sql.Composed:
    typed = model.typed_fields()
    columns = [
        *("stream_ms", "stream_seq", "seq", "received_at", "updated_at", "time", "record"),
        "row_key",
        *(field.column for field in typed),
    ]
    return sql.SQL(
        """INSERT INTO {table} ({columns})
        SELECT s.stream_ms, s.stream_seq, s.seq, s.received_at, s.u, coalesce(s.u, s.received_at),
               s.record, s.row_key, {typed}
        FROM (
            SELECT *, (record->>'updated_at')::timestamptz AS u FROM {staging}
            WHERE channel = {channel}
        ) AS s
        ON CONFLICT DO NOTHING"""
    ).format(
        table=sql.Identifier(model._meta.db_table),
        columns=sql.SQL(", ").join(map(sql.Identifier, columns)),
        typed=sql.SQL(", ").join(_extract(model, field) for field in typed),
        staging=sql.Identifier(STAGING_TABLE),
        channel=sql.Literal(channel),
    )


# Market data: the tick insert feeds the 1-minute candles with the rows it actually inserted
# (RETURNING skips replayed rows, so a replay never counts a tick twice). Within the batch the
# first/last tick of each minute is the smallest/largest [epoch, id, price, volume] array: no
# per-minute sort, unlike array_agg(... ORDER BY ...), which cost ~4 % of the load rate.
# float8 epoch seconds keep distinct microseconds apart (resolution 0.24 us until 2106) and ids
# are exact below 2**53, so the (time, id) order decides and price/volume never do. Against the
# stored candle the kept (time, id) of its open and close decide, so batches may arrive in any
# order. The statement returns the number of ticks inserted.
_CANDLE_UPSERT: Final = sql.SQL(
    """, candles AS (
        INSERT INTO {candles} AS c (symbol, bucket, open, open_time, open_id, high, low, close,
                                    close_time, close_id, volume, ticks)
        SELECT symbol, bucket, first[3], first_time, first[2]::bigint, high, low,
               last[3], last_time, last[2]::bigint, last[4], ticks
        FROM (
            SELECT symbol, date_bin('1 minute', time, {origin}) AS bucket,
                   min(ARRAY[date_part('epoch', time), id::float8, last_price]) AS first,
                   max(ARRAY[date_part('epoch', time), id::float8, last_price, volume_24h])
                       AS last,
                   min(time) AS first_time, max(time) AS last_time,
                   max(last_price) AS high, min(last_price) AS low, count(*) AS ticks
            FROM inserted
            GROUP BY symbol, bucket
        ) AS batch
        ON CONFLICT (symbol, bucket) DO UPDATE SET
            open = CASE WHEN (EXCLUDED.open_time, EXCLUDED.open_id) < (c.open_time, c.open_id)
                        THEN EXCLUDED.open ELSE c.open END,
            open_id = CASE WHEN (EXCLUDED.open_time, EXCLUDED.open_id) < (c.open_time, c.open_id)
                           THEN EXCLUDED.open_id ELSE c.open_id END,
            open_time = least(c.open_time, EXCLUDED.open_time),
            high = greatest(c.high, EXCLUDED.high),
            low = least(c.low, EXCLUDED.low),
            close = CASE WHEN (EXCLUDED.close_time, EXCLUDED.close_id) > (c.close_time, c.close_id)
                         THEN EXCLUDED.close ELSE c.close END,
            volume = CASE WHEN (EXCLUDED.close_time, EXCLUDED.close_id) > (c.close_time, c.close_id)
                          THEN EXCLUDED.volume ELSE c.volume END,
            close_id = CASE WHEN (EXCLUDED.close_time, EXCLUDED.close_id)
                                 > (c.close_time, c.close_id)
                            THEN EXCLUDED.close_id ELSE c.close_id END,
            close_time = greatest(c.close_time, EXCLUDED.close_time),
            ticks = c.ticks + EXCLUDED.ticks
    )
    SELECT count(*) FROM inserted"""
).format(
    candles=sql.Identifier(MinuteCandle._meta.db_table),
    origin=sql.Literal(CANDLE_ORIGIN),
)


def _tick_statement() -> sql.Composed:
    insert = _insert_statement("market_data", MarketTick)
    returning = sql.SQL(" RETURNING symbol, time, id, last_price, volume_24h)")
    return sql.Composed([sql.SQL("WITH inserted AS ("), insert, returning, _CANDLE_UPSERT])


_INSERTS: Final = {channel: _insert_statement(channel, m) for channel, m in HISTORY_MODELS.items()}
_INSERTS["market_data"] = _tick_statement()


def staging_create(*, conn: psycopg.Connection[Any]) -> None:
    """Create this connection's staging table (called once after connecting)."""
    with conn.transaction():
        conn.execute(_CREATE_STAGING)


def history_rows_write(
    *, conn: psycopg.Connection[Any], rows: Sequence[StreamRow]
) -> dict[str, int]:
    """Write one batch in one transaction; return the rows inserted per type (replays: 0)."""
    inserted: dict[str, int] = {}
    channels = {row.channel for row in rows}
    with conn.transaction(), conn.cursor() as cursor:
        with cursor.copy(_COPY) as copy:
            for row in rows:
                copy.write_row(
                    (
                        row.stream_ms,
                        row.stream_seq,
                        row.channel,
                        row.seq,
                        row.received_at,
                        row.record_json,
                        row.row_key,
                    )
                )
        for channel in sorted(channels):
            cursor.execute(_INSERTS[channel])
            if channel == "market_data":
                counted = cursor.fetchone()
                inserted[channel] = int(counted[0]) if counted else 0
            else:
                inserted[channel] = max(cursor.rowcount, 0)
    return inserted


def history_rows_write_isolating(
    *, conn: psycopg.Connection[Any], rows: Sequence[StreamRow]
) -> tuple[dict[str, int], list[tuple[StreamRow, str]]]:
    """Write a batch; rows PostgreSQL refuses are split off and returned with the error.

    Connection and server errors propagate: those rows must be retried, never dropped.
    """
    pending: list[Sequence[StreamRow]] = [rows]
    inserted: dict[str, int] = {}
    refused: list[tuple[StreamRow, str]] = []
    # Bounded: each failed part is split in two, so at most 2 * len(rows) writes are tried.
    while pending:
        part = pending.pop()
        try:
            for channel, n in history_rows_write(conn=conn, rows=part).items():
                inserted[channel] = inserted.get(channel, 0) + n
        except _ROW_ERRORS as exc:
            if len(part) == 1:
                refused.append((part[0], f"{type(exc).__name__}: {str(exc).strip()[:200]}"))
            else:
                middle = len(part) // 2
                pending += [part[middle:], part[:middle]]
    return inserted, refused


def history_prune(*, before: datetime, batch_size: int = PRUNE_BATCH) -> dict[str, int]:
    """Delete rows whose `time` is before `before` (rounded down to the minute), in batches.

    Returns the rows deleted per type, and the 1-minute candles deleted as `candles_1m`.
    """
    before = before.replace(second=0, microsecond=0)
    deleted: dict[str, int] = {}
    for channel, model in HISTORY_MODELS.items():
        table = connection.ops.quote_name(model._meta.db_table)
        # The oldest rows first through the (time, id) index, each DELETE its own transaction.
        statement = (
            f"DELETE FROM {table} WHERE id IN "  # noqa: S608 -- the table name is the model's
            f"(SELECT id FROM {table} WHERE time < %s ORDER BY time, id LIMIT %s)"
        )
        total = 0
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT min(id), max(id) FROM {table}")  # noqa: S608
            low, high = cursor.fetchone() or (None, None)
            # Every batch but the last deletes batch_size rows, so this bounds the loop.
            batches = 0 if low is None else (high - low) // batch_size + 2
            for _ in range(batches):
                cursor.execute(statement, [before, batch_size])
                total += cursor.rowcount
                if cursor.rowcount < batch_size:
                    break
        deleted[channel] = total
    # Minute candles go with their minutes: the cut-off is whole minutes (see history_prune's
    # caller), so no candle outlives some of its ticks.
    table = connection.ops.quote_name(MinuteCandle._meta.db_table)
    total = 0
    with connection.cursor() as cursor:
        for _ in range(1_000_000):  # bounded: each pass deletes batch_size or ends the loop
            cursor.execute(
                f"DELETE FROM {table} WHERE id IN "  # noqa: S608
                f"(SELECT id FROM {table} WHERE bucket < %s LIMIT %s)",
                [before, batch_size],
            )
            total += cursor.rowcount
            if cursor.rowcount < batch_size:
                break
    deleted["candles_1m"] = total
    return deleted
