"""Day partitions of the history tables, and retention by whole days.

Each history table is partitioned by UTC day (`history_markettick_p20260131`). The batch write
creates the days a batch needs (`partitions_ensure`, from `history/services.py`) and the recorder
creates the next few ahead (`services.partitions_ahead`); `prune_history` drops the days wholly
older than the retention (`history_prune`), and deletes the 1-minute candles before them.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final

import psycopg
from django.db import connection
from psycopg import sql

from history.models import HISTORY_MODELS, MinuteCandle

# Candle deletes: 10,000 rows per DELETE, each its own transaction.
PRUNE_BATCH: Final = 10_000


def partition_name(table: str, day: date) -> str:
    """`history_markettick_p20260131`: the partition of `table` holding UTC day `day`."""
    return f"{table}_p{day:%Y%m%d}"


def partition_day(table: str, name: str) -> date | None:
    """The day of a partition named by `partition_name`; None for any other table."""
    prefix = f"{table}_p"
    if not name.startswith(prefix) or len(name) != len(prefix) + 8:
        return None
    try:
        return datetime.strptime(name[len(prefix) :], "%Y%m%d").replace(tzinfo=UTC).date()
    except ValueError:
        return None


def _partition_create(table: str, day: date) -> sql.Composed:
    start = f"{day.isoformat()} 00:00:00+00"
    try:
        end = f"{(day + timedelta(days=1)).isoformat()} 00:00:00+00"
    except OverflowError:  # 9999-12-31: the last day timestamptz and Python share
        end = "infinity"
    return sql.SQL(
        "CREATE TABLE IF NOT EXISTS {} PARTITION OF {} FOR VALUES FROM ({}) TO ({})"
    ).format(sql.Identifier(partition_name(table, day)), sql.Identifier(table), start, end)


def partitions_ensure(
    cursor: psycopg.Cursor[Any], wanted: Iterable[tuple[str, date]], known: set[tuple[str, date]]
) -> set[tuple[str, date]]:
    """Create the (table, day) partitions not in `known`; return those it asked for.

    The caller adds the returned pairs to `known` once its transaction has committed.
    """
    created: set[tuple[str, date]] = set()
    for table, day in sorted(set(wanted) - known):
        cursor.execute(_partition_create(table, day))
        created.add((table, day))
    return created


def partitions_list(table: str) -> list[tuple[str, date]]:
    """The day partitions of `table` (Django's connection), oldest first."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = %s::regclass",
            [table],
        )
        names = [name for (name,) in cursor.fetchall()]
    found = [(name, day) for name in names if (day := partition_day(table, name)) is not None]
    return sorted(found, key=lambda pair: pair[1])


# --- retention ---------------------------------------------------------------------------------


def retention_cutoff(now: datetime, days: int) -> date:
    """The first UTC day kept: days before it are wholly older than `days` days."""
    return (now - timedelta(days=days)).astimezone(UTC).date()


def history_prune(*, keep_from: date, batch_size: int = PRUNE_BATCH) -> dict[str, int]:
    """Drop the day partitions before `keep_from`; delete the minute candles before it.

    A day goes whole or not at all: a day partly inside the retention period is kept until it
    is wholly outside. Returns the partitions dropped per type, and the 1-minute candles deleted
    as `candles_1m`.
    """
    dropped: dict[str, int] = {}
    for channel, model in HISTORY_MODELS.items():
        old = [name for name, day in partitions_list(model._meta.db_table) if day < keep_from]
        for name in old:
            with connection.cursor() as cursor:  # each DROP its own (autocommit) transaction
                cursor.execute(f"DROP TABLE IF EXISTS {connection.ops.quote_name(name)}")
        dropped[channel] = len(old)
    before = datetime(keep_from.year, keep_from.month, keep_from.day, tzinfo=UTC)
    table = connection.ops.quote_name(MinuteCandle._meta.db_table)
    total = 0
    with connection.cursor() as cursor:
        for _ in range(1_000_000):  # bounded: each pass deletes batch_size or ends the loop
            cursor.execute(
                f"DELETE FROM {table} WHERE (symbol_id, bucket) IN "  # noqa: S608
                f"(SELECT symbol_id, bucket FROM {table} WHERE bucket < %s LIMIT %s)",
                [before, batch_size],
            )
            total += cursor.rowcount
            if cursor.rowcount < batch_size:
                break
    dropped["candles_1m"] = total
    return dropped
