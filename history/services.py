"""Writes to the history tables: the recorder's batch write (its SQL: `history/batch_sql.py`).

The batch write runs on a plain psycopg 3 connection (not Django's), in one transaction. A
typical tick is split into the tick table's typed columns and `extra` here, in Python
(`history/tick_rows.py`), and binary-COPYed into a typed staging table: PostgreSQL neither
parses nor takes apart a JSONB record for it. Every other row (the other kinds, and a tick with
an `updated_at` spelled otherwise than the three rebuilt spellings or a value that is not a
JSON number) is COPYed whole into the JSONB staging table and PostgreSQL splits it
(`batch_sql.staged_rows_insert`); both splits store the same columns for the same tick
(tested side by side). Then new symbols and writers into their dictionaries, the day partitions
the batch needs, and one `INSERT ... SELECT` per table (ticks feeding the minute candles).

Exactly once on the writer's key: a row is inserted unless a row with its `(writer_id, n)`
exists — looked up through the `(key, time)` index the API reads with (a replayed row has the
same key and time). No unique index is needed for it (on a partitioned table one would have to
include `time`, and would cost a third of the table's size); writes of concurrent recorders are
serialised by a transaction-level advisory lock instead, so two of them cannot both find a key
missing. Rows repeated within one batch are inserted once (the first of them: `rows_split`).
A typed tick later than its symbol's latest stored tick (read under the lock) cannot be stored
yet, so its key is not looked up (`batch_sql.LATEST_TIMES`): in stream order only late ticks
and replays are.

Day partitions and retention: `history/partitions.py`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final

import orjson
import psycopg
from psycopg.types.json import Jsonb

from history.batch_sql import (
    CLEAR_TICK_STAGING,
    COPY_STAGING,
    COPY_TICKS,
    CREATE_STAGING,
    CREATE_TICK_STAGING,
    ENSURE_SYMBOLS,
    ENSURE_SYMBOLS_OF,
    ENSURE_WRITERS,
    ENSURE_WRITERS_OF,
    INSERTS,
    LATEST_TIMES,
    STAGED_DAYS,
    SYMBOL_IDS,
    TICK_COPY_TYPES,
    TICK_INSERT,
    WRITE_LOCK,
    WRITER_IDS,
)
from history.models import HISTORY_MODELS, LEGACY_WRITER, MarketTick

# Re-exported for bench/history.py, which imports it from here; new code imports it from
# history/partitions.py.
from history.partitions import history_prune as history_prune
from history.partitions import partitions_ensure
from history.stream_rows import StreamRow
from history.tick_rows import TickValues, tick_values, utc_day

# A value PostgreSQL refuses although the record passed validation: a string holding \u0000
# (jsonb and text cannot store it), an integer past bigint, a timestamp past its range.
# Retrying cannot help such a row, so the batch is split until the row is isolated.
_ROW_ERRORS: Final = (psycopg.errors.DataError, psycopg.errors.IntegrityError)
_TICK_TABLE: Final = MarketTick._meta.db_table
# Before any time: the latest stored time of a symbol without ticks.
_NEVER: Final = datetime.min.replace(tzinfo=UTC)
# A tick split for the typed staging table: writer, n, seq, symbol, `tick_values`' values.
Tick = tuple[int, int, int, str, TickValues]


def partitions_ahead(
    *, conn: psycopg.Connection[Any], today: date, days: int, known: set[tuple[str, date]]
) -> None:
    """Create every table's partitions for `today` and the `days` days after it (committed)."""
    wanted = [
        (model._meta.db_table, today + timedelta(days=d))
        for model in HISTORY_MODELS.values()
        for d in range(days + 1)
    ]
    with conn.transaction(), conn.cursor() as cursor:
        cursor.execute(WRITE_LOCK)
        created = partitions_ensure(cursor, wanted, known)
    known |= created


def staging_create(*, conn: psycopg.Connection[Any]) -> None:
    """Create this connection's staging tables (called once after connecting)."""
    with conn.transaction():
        conn.execute(CREATE_STAGING)
        conn.execute(CREATE_TICK_STAGING)


def staged_rows_write(
    cursor: psycopg.Cursor[Any], known: set[tuple[str, date]]
) -> tuple[dict[str, int], set[tuple[str, date]]]:
    """Write what the JSONB staging table holds (in the caller's transaction, write lock held).

    Returns the rows inserted per type and the partitions created.
    """
    cursor.execute(ENSURE_SYMBOLS)
    cursor.execute(ENSURE_WRITERS)
    cursor.execute(STAGED_DAYS)
    days = cursor.fetchall()
    created = partitions_ensure(
        cursor, [(HISTORY_MODELS[channel]._meta.db_table, day) for channel, day in days], known
    )
    inserted: dict[str, int] = {}
    for channel in sorted({channel for channel, _ in days}):
        cursor.execute(INSERTS[channel])
        inserted[channel] = _inserted(cursor, channel)
    return inserted, created


def _inserted(cursor: psycopg.Cursor[Any], channel: str) -> int:
    if channel == "market_data":  # the statement with the candles counts what it inserted
        counted = cursor.fetchone()
        return int(counted[0]) if counted else 0
    return max(cursor.rowcount, 0)


def jsonb_rows_copy(cursor: psycopg.Cursor[Any], rows: Iterable[StreamRow]) -> None:
    """COPY rows into the JSONB staging table, each record whole (PostgreSQL splits it)."""
    with cursor.copy(COPY_STAGING) as copy:
        for row in rows:
            writer, n = row.key()
            copy.write_row((writer, n, row.channel, row.seq, row.received_at, row.record_json))


def tick_rows_write(
    cursor: psycopg.Cursor[Any], ticks: Sequence[Tick], known: set[tuple[str, date]]
) -> tuple[int, set[tuple[str, date]]]:
    """Write ticks already split into typed values (in the caller's transaction, lock held).

    Keys must be unique among `ticks`. Returns the rows inserted and the partitions created.
    """
    symbols = sorted({symbol for _, _, _, symbol, _ in ticks})
    writers = sorted({writer for writer, _, _, _, _ in ticks})
    cursor.execute(ENSURE_SYMBOLS_OF, [symbols])
    cursor.execute(SYMBOL_IDS, [symbols])
    symbol_ids: dict[str, int] = dict(cursor.fetchall())
    writer_ids: dict[int, int] = {LEGACY_WRITER: LEGACY_WRITER}
    if writers != [LEGACY_WRITER]:
        cursor.execute(ENSURE_WRITERS_OF, [writers])
        cursor.execute(WRITER_IDS, [writers])
        writer_ids.update(cursor.fetchall())
    times = [values[0] for _, _, _, _, values in ticks]
    earliest, last = min(times), max(times)
    days = {utc_day(earliest)} if utc_day(earliest) == utc_day(last) else set(map(utc_day, times))
    created = partitions_ensure(cursor, [(_TICK_TABLE, day) for day in days], known)
    # Staged rows of an earlier write in this transaction (the caller's, which the write is a
    # savepoint of; ON COMMIT empties the table) would go in again unprobed: out with them.
    cursor.execute(CLEAR_TICK_STAGING)
    cursor.execute(LATEST_TIMES, [earliest, list(symbol_ids.values())])
    latest = {symbol_id: stored or _NEVER for symbol_id, stored in cursor.fetchall()}
    # symbol -> (its id, the latest time stored for it): a tick after that is not looked up
    symbol_of = {symbol: (symbol_id, latest[symbol_id]) for symbol, symbol_id in symbol_ids.items()}
    with cursor.copy(COPY_TICKS) as copy:
        copy.set_types(TICK_COPY_TYPES)
        for writer, n, seq, symbol, values in ticks:
            if values[-1] is not None:  # fields the contract does not name: `extra`
                values = (*values[:-1], Jsonb(values[-1], dumps=orjson.dumps))
            symbol_id, stored = symbol_of[symbol]
            copy.write_row((writer_ids[writer], n, seq, symbol_id, *values, values[0] <= stored))
    cursor.execute(TICK_INSERT)
    return _inserted(cursor, "market_data"), created


def rows_split(rows: Iterable[StreamRow]) -> tuple[list[Tick], list[StreamRow]]:
    """The batch without repeated keys: ticks split into typed values, and the other rows.

    A key repeated within the batch (per type) is written once, its first row. The record
    `parse_entry` kept is used as it is; a row without one has its JSON parsed here.
    """
    seen: set[tuple[str, int, int]] = set()
    ticks: list[Tick] = []
    others: list[StreamRow] = []
    for row in rows:
        writer, n = row.key()
        if (row.channel, writer, n) in seen:
            continue
        seen.add((row.channel, writer, n))
        if row.channel == "market_data":
            record = row.record
            if record is None:
                record = orjson.loads(row.record_json)
            split = tick_values(record, row.received_at)
            if split is not None:
                ticks.append((writer, n, row.seq, split[0], split[1]))
                continue
        others.append(row)
    return ticks, others


@dataclass(frozen=True, slots=True)
class PreparedBatch:
    """A batch as `batch_prepare` leaves it for `prepared_write`: the Python side of the write.

    Preparing needs no connection, so the recorder prepares the next batch while PostgreSQL
    writes the previous one (`history/batch_writer.py`).
    """

    rows: Sequence[StreamRow]
    ticks: list[Tick]
    others: list[StreamRow]


def batch_prepare(rows: Sequence[StreamRow]) -> PreparedBatch:
    """Split a batch for the write (`rows_split`), without touching the database."""
    ticks, others = rows_split(rows)
    return PreparedBatch(rows, ticks, others)


def prepared_write(
    *, conn: psycopg.Connection[Any], batch: PreparedBatch, known: set[tuple[str, date]]
) -> dict[str, int]:
    """Write a prepared batch in one transaction; return the rows inserted per type."""
    inserted: dict[str, int] = {}
    created: set[tuple[str, date]] = set()
    with conn.transaction(), conn.cursor() as cursor:
        cursor.execute(WRITE_LOCK)
        if batch.others:
            jsonb_rows_copy(cursor, batch.others)
            inserted, created = staged_rows_write(cursor, known)
        if batch.ticks:
            count, made = tick_rows_write(cursor, batch.ticks, known | created)
            inserted["market_data"] = inserted.get("market_data", 0) + count
            created |= made
    known |= created
    return inserted


def history_rows_write(
    *,
    conn: psycopg.Connection[Any],
    rows: Sequence[StreamRow],
    known: set[tuple[str, date]] | None = None,
) -> dict[str, int]:
    """Write one batch in one transaction; return the rows inserted per type (replays: 0).

    `known`: the partitions this connection knows to exist (updated on commit).
    """
    known = set() if known is None else known
    return prepared_write(conn=conn, batch=batch_prepare(rows), known=known)


def history_rows_write_isolating(
    *,
    conn: psycopg.Connection[Any],
    rows: Sequence[StreamRow] | PreparedBatch,
    known: set[tuple[str, date]] | None = None,
) -> tuple[dict[str, int], list[tuple[StreamRow, str]]]:
    """Write a batch; rows PostgreSQL refuses are split off and returned with the error.

    `rows` may be already prepared (`batch_prepare`): its parts, if it fails, are prepared
    again. Connection and server errors propagate: those rows must be retried, never dropped.
    """
    known = set() if known is None else known
    pending: list[Sequence[StreamRow] | PreparedBatch] = [rows]
    inserted: dict[str, int] = {}
    refused: list[tuple[StreamRow, str]] = []
    # Bounded: each failed part is split in two, so at most 2 * len(rows) writes are tried.
    while pending:
        item = pending.pop()
        batch = item if isinstance(item, PreparedBatch) else batch_prepare(item)
        part = batch.rows
        try:
            for channel, n in prepared_write(conn=conn, batch=batch, known=known).items():
                inserted[channel] = inserted.get(channel, 0) + n
        except _ROW_ERRORS as exc:
            if len(part) == 1:
                refused.append((part[0], f"{type(exc).__name__}: {str(exc).strip()[:200]}"))
            else:
                middle = len(part) // 2
                pending += [part[middle:], part[:middle]]
    return inserted, refused
