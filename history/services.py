"""Writes to the history tables: the recorder's batch write (its SQL: `history/batch_sql.py`).

The batch write runs on a plain psycopg 3 connection (not Django's), in one transaction: COPY
into a TEMP staging table, then new symbols and writers into their dictionaries, the day
partitions the batch needs, and one `INSERT ... SELECT` per table. PostgreSQL itself splits the
staged JSONB record into the typed columns and `extra` (only what the typed columns cannot
reproduce exactly), so the Python side only streams rows.

Exactly once on the writer's key: a row is inserted unless a row with its `(writer_id, n)`
exists — looked up through the `(key, time)` index the API reads with (a replayed row has the
same key and time). No unique index is needed for it (on a partitioned table one would have to
include `time`, and would cost a third of the table's size); writes of concurrent recorders are
serialised by a transaction-level advisory lock instead, so two of them cannot both find a key
missing. Rows repeated within one batch are inserted once (DISTINCT ON the key).

Day partitions and retention: `history/partitions.py`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta
from typing import Any, Final

import psycopg

from history.batch_sql import (
    COPY_STAGING,
    CREATE_STAGING,
    ENSURE_SYMBOLS,
    ENSURE_WRITERS,
    INSERTS,
    STAGED_DAYS,
    WRITE_LOCK,
)
from history.models import HISTORY_MODELS

# Re-exported for bench/history.py, which imports it from here; new code imports it from
# history/partitions.py.
from history.partitions import history_prune as history_prune
from history.partitions import partitions_ensure
from history.stream_rows import StreamRow

# A value PostgreSQL refuses although the record passed validation: a string holding \u0000
# (jsonb and text cannot store it), an integer past bigint, a timestamp past its range.
# Retrying cannot help such a row, so the batch is split until the row is isolated.
_ROW_ERRORS: Final = (psycopg.errors.DataError, psycopg.errors.IntegrityError)


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
    """Create this connection's staging table (called once after connecting)."""
    with conn.transaction():
        conn.execute(CREATE_STAGING)


def staged_rows_write(
    cursor: psycopg.Cursor[Any], known: set[tuple[str, date]]
) -> tuple[dict[str, int], set[tuple[str, date]]]:
    """Write what the staging table holds (in the caller's transaction, write lock held).

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
        if channel == "market_data":
            counted = cursor.fetchone()
            inserted[channel] = int(counted[0]) if counted else 0
        else:
            inserted[channel] = max(cursor.rowcount, 0)
    return inserted, created


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
    with conn.transaction(), conn.cursor() as cursor:
        cursor.execute(WRITE_LOCK)
        with cursor.copy(COPY_STAGING) as copy:
            for row in rows:
                writer, n = row.key()
                copy.write_row((writer, n, row.channel, row.seq, row.received_at, row.record_json))
        inserted, created = staged_rows_write(cursor, known)
    known |= created
    return inserted


def history_rows_write_isolating(
    *,
    conn: psycopg.Connection[Any],
    rows: Sequence[StreamRow],
    known: set[tuple[str, date]] | None = None,
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
            for channel, n in history_rows_write(conn=conn, rows=part, known=known).items():
                inserted[channel] = inserted.get(channel, 0) + n
        except _ROW_ERRORS as exc:
            if len(part) == 1:
                refused.append((part[0], f"{type(exc).__name__}: {str(exc).strip()[:200]}"))
            else:
                middle = len(part) // 2
                pending += [part[middle:], part[:middle]]
    return inserted, refused
