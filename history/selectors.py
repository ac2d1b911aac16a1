"""Reads of the history tables: keyset pages of records and OHLC candles, newest first.

Pages are keyset pages over `(time, writer_id, n)`: the next page is "strictly older than the
last row sent", which an insert can never shift (unlike OFFSET), so a walk sees no row twice.
Records are rebuilt from their typed columns, key name and `extra`. Candles are merged by
PostgreSQL from the 1-minute candles the recorder maintains (`date_bin` + ordered aggregates),
one page of buckets at a time.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import orjson
from django.db import connection, connections, models

from history.batch_sql import canonical_time, updated_at_text
from history.models import (
    CANDLE_ORIGIN,
    HISTORY_MODELS,
    UPDATED_VERBATIM,
    HistoryRow,
    MinuteCandle,
    Symbol,
)
from history.params import Cursor
from history.routers import read_alias

_FAR_PAST: Final = datetime(1, 1, 2, tzinfo=UTC)
_FAR_FUTURE: Final = datetime(9999, 12, 30, tzinfo=UTC)
_SYMBOLS: Final = connection.ops.quote_name(Symbol._meta.db_table)


@dataclass(frozen=True, slots=True)
class Page:
    """One page of results and where the next one starts (None: this was the last)."""

    items: list[dict[str, Any]]
    next: Cursor | None


def rfc3339(moment: datetime) -> str:
    """`2024-05-01T12:00:00.123456Z`: the API's time format."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def columns_sql(model: type[HistoryRow], prefix: str = "") -> str:
    """The select list `decoders()` read a stored row from (`prefix`: the table's alias + '.')."""
    p = prefix
    typed = [
        _text(f"{p}{field.column}")
        if isinstance(field, models.DateTimeField)
        else f"{p}{field.column}"
        for field in model.typed_fields()
    ]
    offset = f"coalesce({p}received_us, 0) * interval '1 microsecond'"
    received = f"coalesce({p}received_at, {p}time + {offset})"
    return ", ".join(
        [
            _text(f"{p}time"),
            f"{p}writer_id",
            f"{p}n",
            f"{p}seq",
            _text(received),
            f"{p}updated_format",
            f"{p}extra",
            *typed,
        ]
    )


Decoder = Callable[[Sequence[Any], str | None], dict[str, Any]]


def _decoder(model: type[HistoryRow]) -> Decoder:
    """Rebuild an API item (the record, `seq`, `received_at`) from a row of `columns_sql(model)`.

    The record's typed fields come from their columns, its key from the symbol name, every other
    field (and any typed one not spelled as the column gives it back) from `extra`.
    """
    fields = [
        (
            model.record_key(field.name),
            canonical_time
            if isinstance(field, models.DateTimeField)
            else _json
            if isinstance(field, models.JSONField)
            else None,
        )
        for field in model.typed_fields()
    ]
    key = model.key_record if model.key_field is not None else None

    def decode(row: Sequence[Any], name: str | None) -> dict[str, Any]:
        record: dict[str, Any] = {} if key is None else {key: name}
        for (field, load), value in zip(fields, row[7:], strict=True):
            if value is not None:
                record[field] = value if load is None else load(value)
        if row[5] is not None and row[5] < UPDATED_VERBATIM:  # else: absent, or in extra
            record["updated_at"] = updated_at_text(row[0], row[5])
        if row[6] is not None:
            record.update(_json(row[6]))
        record["seq"], record["received_at"] = row[3], row[4]
        return record

    return decode


_ORDER: Final = "time DESC, writer_id DESC, n DESC"


@functools.cache
def decoders() -> dict[str, Decoder]:
    """Per type: rebuild an API item from a row of `columns_sql` and the key's name."""
    return {kind: _decoder(model) for kind, model in HISTORY_MODELS.items()}


def symbol_id(name: str) -> int | None:
    """The id of a symbol (or strategy id) in `history_symbol`; None if never recorded."""
    with connections[read_alias()].cursor() as cursor:
        cursor.execute(f"SELECT id FROM {_SYMBOLS} WHERE name = %s", [name])  # noqa: S608
        row = cursor.fetchone()
    return None if row is None else int(row[0])


def history_list(
    *,
    kind: str,
    symbol: str | None,
    start: datetime | None,
    end: datetime | None,
    before: Cursor | None,
    limit: int,
) -> Page:
    """Records of `kind` (one symbol or all) with start <= time < end, newest first."""
    model = HISTORY_MODELS[kind]
    conditions: list[str] = []
    params: list[Any] = []
    if start is not None:
        conditions.append("time >= %s")
        params.append(start)
    if end is not None:
        conditions.append("time < %s")
        params.append(end)
    if before is not None:
        # `time <=` too: the index is (key, time), and the row comparison alone is no bound on it.
        conditions.append("time <= %s AND (time, writer_id, n) < (%s, %s, %s)")
        params += [before.time, before.time, before.writer, before.n]
    table = connection.ops.quote_name(model._meta.db_table)
    # Plain SQL rather than the ORM: the page is the API's hot path, and the ORM's query
    # building and per-row conversions cost more than the query itself (bench, a 100-row page
    # with times as text, below: 2.6 ms -> 0.7 ms). Only fixed fragments are formatted in.
    if model.key_field is None:
        where = " AND ".join(conditions) or "TRUE"
        statement = (
            f"SELECT NULL, {columns_sql(model)} FROM {table} "  # noqa: S608
            f"WHERE {where} ORDER BY {_ORDER} LIMIT %s"
        )
    elif symbol is not None:
        key = symbol_id(symbol)
        if key is None:
            return Page([], None)
        where = " AND ".join(["symbol_id = %s", *conditions])
        params.insert(0, key)
        statement = (
            f"SELECT NULL, {columns_sql(model)} FROM {table} "  # noqa: S608
            f"WHERE {where} ORDER BY {_ORDER} LIMIT %s"
        )
    else:
        # Every key's newest rows through its own index range, merged: bounded by the number of
        # keys times the page, where one scan over (time) would have to sort the whole range.
        where = " AND ".join(["t.symbol_id = y.id", *conditions])
        statement = (
            f"SELECT y.name, t.* FROM {_SYMBOLS} y CROSS JOIN LATERAL ("  # noqa: S608
            f"SELECT {columns_sql(model)} FROM {table} t WHERE {where} "
            f"ORDER BY {_ORDER} LIMIT %s) AS t ORDER BY 2 DESC, 3 DESC, 4 DESC LIMIT %s"
        )
        params.append(limit + 1)
    with connections[read_alias()].cursor() as cursor:
        cursor.execute(statement, [*params, limit + 1])
        found = cursor.fetchall()
    decode = decoders()[kind]
    items = [decode(row[1:], row[0] or symbol) for row in found[:limit]]
    if len(found) <= limit:
        return Page(items, None)
    last = found[limit - 1]
    return Page(items, Cursor(datetime.fromisoformat(last[1]), last[2], last[3]))


def _text(column: str) -> str:
    """SQL rendering a timestamptz column as rfc3339() does.

    Times leave PostgreSQL as text: Django's timestamptz loader costs ~5 us a value, more than
    PostgreSQL spends on a whole 100-row page.
    """
    return f"""to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"""


def _json(value: str | dict[str, Any]) -> dict[str, Any]:
    """A jsonb value from Django's connection (which hands jsonb over as text)."""
    if isinstance(value, str):
        decoded: dict[str, Any] = orjson.loads(value)
        return decoded
    return value


def bucket_start(moment: datetime, step: timedelta) -> datetime:
    """The start of the bucket holding `moment` (PostgreSQL's `date_bin` with CANDLE_ORIGIN)."""
    return CANDLE_ORIGIN + step * ((moment - CANDLE_ORIGIN) // step)


def _bucket_at_or_after(moment: datetime, step: timedelta, *, default: datetime) -> datetime:
    try:
        start = bucket_start(moment, step)
        return start if start == moment else start + step
    except OverflowError:  # within a bucket of year 1 or 9999
        return default


_TABLE: Final = connection.ops.quote_name(MinuteCandle._meta.db_table)
_NEWEST: Final = (
    f"SELECT bucket FROM {_TABLE} "  # noqa: S608 -- the table name is the model's
    "WHERE symbol_id = %s AND bucket >= %s AND bucket < %s ORDER BY bucket DESC LIMIT 1"
)
_OLDER_EXISTS: Final = (
    f"SELECT EXISTS (SELECT 1 FROM {_TABLE} "  # noqa: S608
    "WHERE symbol_id = %s AND bucket >= %s AND bucket < %s)"
)
# Candles of `step` merge the 1-minute candles (MinuteCandle) inside each bucket: the open of
# the earliest minute, the close and volume of the latest, the extremes of all, the tick sum.
# Minutes are disjoint and ordered, so the earliest minute holds the bucket's first tick.
_CANDLES: Final = f"""
    SELECT {_text("b")}, open, high, low, close, volume, ticks
    FROM (
        SELECT date_bin(%(step)s, bucket, %(origin)s) AS b,
               (array_agg(open ORDER BY bucket))[1] AS open,
               max(high) AS high,
               min(low) AS low,
               (array_agg(close ORDER BY bucket DESC))[1] AS close,
               (array_agg(volume ORDER BY bucket DESC))[1] AS volume,
               sum(ticks) AS ticks
        FROM {_TABLE}
        WHERE symbol_id = %(symbol)s AND bucket >= %(low)s AND bucket < %(high)s
        GROUP BY b
    ) AS candles
    ORDER BY b DESC
"""  # noqa: S608


def candle_list(
    *,
    symbol: str,
    step: timedelta,
    start: datetime | None,
    end: datetime | None,
    before: Cursor | None,
    limit: int,
) -> Page:
    """OHLC candles of one symbol's last_price whose start is in [start, end), newest first.

    Candles are always whole: `start`/`end` select them by their start (UTC-aligned). A page
    spans the `limit` bucket widths ending with the newest candle in range, so its cost is
    bounded by those buckets' minutes; a gap in the data can make a page short, never skip one.
    """
    low = _FAR_PAST if start is None else _bucket_at_or_after(start, step, default=_FAR_PAST)
    high = _FAR_FUTURE if end is None else _bucket_at_or_after(end, step, default=_FAR_FUTURE)
    if before is not None:
        high = min(high, before.time)
    key = symbol_id(symbol)
    if key is None:
        return Page([], None)
    with connections[read_alias()].cursor() as cursor:
        cursor.execute(_NEWEST, [key, low, high])
        newest = cursor.fetchone()
        if newest is None:
            return Page([], None)
        try:
            page_low = max(bucket_start(newest[0], step) - step * (limit - 1), low)
        except OverflowError:  # a tick stamped near year 1: the page reaches back to `low`
            page_low = low
        params: dict[str, Any] = {"step": step, "origin": CANDLE_ORIGIN, "symbol": key}
        cursor.execute(_CANDLES, {**params, "low": page_low, "high": high})
        candles = [
            {
                "time": bucket,
                "open": first,
                "high": top,
                "low": bottom,
                "close": last,
                "volume": volume,
                "ticks": int(ticks),
            }
            for bucket, first, top, bottom, last, volume, ticks in cursor.fetchall()
        ]
        older = False
        if page_low > low:
            cursor.execute(_OLDER_EXISTS, [key, low, page_low])
            row = cursor.fetchone()
            older = bool(row and row[0])
    return Page(candles, Cursor(page_low) if older else None)
