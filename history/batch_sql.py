"""The SQL of the recorder's batch write: the staging table, and one statement per history table.

Statements only, built once at import; `history/services.py` runs them in one transaction (its
docstring says how the batch write works and why it is exactly once). `INSERTS[channel]` moves
the staged rows of one type into its table: PostgreSQL splits each staged JSONB record into the
typed columns and `extra` (`staged_rows_insert`), and the market-data insert also folds its
ticks into the 1-minute candles. `canonical_time` and `updated_at_text` are shared with
`history/selectors.py`, which reads back what these statements stored.
"""

from __future__ import annotations

import zlib
from typing import Final

from django.db import models
from psycopg import sql

from history.models import (
    CANDLE_ORIGIN,
    HISTORY_MODELS,
    UPDATED_FORMATS,
    UPDATED_VERBATIM,
    HistoryRow,
    MarketTick,
    MinuteCandle,
    Symbol,
    Writer,
)
from history.tick_rows import TICK_VALUES

STAGING_TABLE: Final = "history_staging"
CREATE_STAGING: Final = sql.SQL(
    """CREATE TEMP TABLE IF NOT EXISTS {} (
        writer bigint NOT NULL,
        n bigint NOT NULL,
        channel text NOT NULL,
        seq bigint NOT NULL,
        received_at timestamptz NOT NULL,
        record jsonb NOT NULL
    ) ON COMMIT DELETE ROWS"""
).format(sql.Identifier(STAGING_TABLE))
COPY_STAGING: Final = sql.SQL(
    "COPY {} (writer, n, channel, seq, received_at, record) FROM STDIN"
).format(sql.Identifier(STAGING_TABLE))
# One key for every history write: recorders take turns (history/services.py's docstring).
# The same statement turns JIT off for the transaction: the tick statement's estimated cost
# passes jit_above_cost once partitions are large (a 5,000-row batch into 333k-row days: cost
# 120k), and compiling it took ~100 ms of a 415 ms batch, every batch, for no faster execution.
WRITE_LOCK: Final = sql.SQL(
    "SELECT pg_advisory_xact_lock({}), set_config('jit', 'off', true)"
).format(sql.Literal(zlib.crc32(b"dashboard-history-write")))
_INT4: Final = 2**31

_STAGED: Final = sql.Identifier(STAGING_TABLE)
_SYMBOLS: Final = sql.Identifier(Symbol._meta.db_table)
_WRITERS: Final = sql.Identifier(Writer._meta.db_table)
# The time a staged row is filed under, and the record's own updated_at.
_UPDATED: Final = sql.SQL("(record->>'updated_at')::timestamptz")


def _key_expression(channel: str) -> sql.Composable | None:
    model = HISTORY_MODELS[channel]
    if model.key_field is None:
        return None
    return sql.SQL("record->>{}").format(sql.Literal(model.key_record))


# New symbols (and strategy ids) of the batch, then new writers. NOT EXISTS first: an INSERT
# that only hits ON CONFLICT would still draw a value from the id sequence every batch.
ENSURE_SYMBOLS: Final = sql.SQL(
    """INSERT INTO {symbols} (name)
    SELECT DISTINCT k FROM (
        SELECT CASE channel {cases} END AS k FROM {staged}
    ) AS s
    WHERE k IS NOT NULL AND NOT EXISTS (SELECT 1 FROM {symbols} y WHERE y.name = s.k)
    ORDER BY k
    ON CONFLICT DO NOTHING"""
).format(
    symbols=_SYMBOLS,
    staged=_STAGED,
    cases=sql.SQL(" ").join(
        sql.SQL("WHEN {} THEN {}").format(sql.Literal(channel), key)
        for channel in HISTORY_MODELS
        if (key := _key_expression(channel)) is not None
    ),
)
ENSURE_WRITERS: Final = sql.SQL(
    """INSERT INTO {writers} (writer)
    SELECT DISTINCT writer FROM {staged} AS s
    WHERE writer <> 0 AND NOT EXISTS (SELECT 1 FROM {writers} w WHERE w.writer = s.writer)
    ORDER BY writer
    ON CONFLICT DO NOTHING"""
).format(writers=_WRITERS, staged=_STAGED)
STAGED_DAYS: Final = sql.SQL(
    "SELECT DISTINCT channel, (coalesce({u}, received_at) AT TIME ZONE 'UTC')::date FROM {staged}"
).format(u=_UPDATED, staged=_STAGED)


def _to_char(value: sql.Composable, pattern: str) -> sql.Composable:
    return sql.SQL("to_char({} AT TIME ZONE 'UTC', {})").format(value, sql.Literal(pattern))


# The index into UPDATED_FORMATS of the staged record's updated_at spelling (NULL: none), from
# `f.us`, updated_at rendered once in the first (microsecond) format: the other two are its
# prefixes when their missing digits are zeros. (One to_char a row: it is the costly part.)
_UPDATED_FORMAT: Final = sql.SQL(
    """CASE WHEN st.u IS NULL THEN NULL
            WHEN st.record->>'updated_at' = f.us THEN 0
            WHEN st.record->>'updated_at' = left(f.us, 23) || 'Z'
                 AND substr(f.us, 24, 3) = '000' THEN 1
            WHEN st.record->>'updated_at' = left(f.us, 19) || 'Z'
                 AND substr(f.us, 21, 6) = '000000' THEN 2
            ELSE {} END"""
).format(sql.Literal(UPDATED_VERBATIM))
_UPDATED_US: Final = sql.SQL("CROSS JOIN LATERAL (SELECT {} AS us) AS f").format(
    _to_char(sql.SQL("st.u"), UPDATED_FORMATS[0])
)


def updated_at_text(time_text: str, code: int) -> str:
    """updated_at as spelled (UPDATED_FORMATS[code]), from the API's microsecond text of time."""
    if code == 1:
        return time_text[:-4] + "Z"
    if code == 2:
        return time_text[:-8] + "Z"
    return time_text


def canonical_time_sql(value: sql.Composable) -> sql.Composable:
    """SQL rendering a timestamptz as the API does, milliseconds when they are exact.

    `2026-05-01T12:00:00.250Z` / `...00.250123Z`. A record's other timestamps (`created_at`)
    spelled this way are rebuilt from their typed column; otherwise kept as written in `extra`.
    """
    text = sql.SQL("""to_char({} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')""").format(
        value
    )
    return sql.SQL("regexp_replace({}, '000Z$', 'Z')").format(text)


def canonical_time(text: str) -> str:
    """The Python side of `canonical_time_sql`, from the API's microsecond text."""
    return text[:-4] + "Z" if text.endswith("000Z") else text


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


def _exact(model: type[HistoryRow], field: models.Field[object, object]) -> sql.Composable:
    """SQL true when the typed column gives back the record's value exactly (so `extra` need not).

    A JSON number with a '.' is a float, which double precision holds exactly; one without
    (an integer, or 1e16 as jsonb spells it) stays in `extra`, so it comes back as written.
    """
    key = sql.Literal(model.record_key(field.name))
    value, text = sql.SQL("s.record->{}").format(key), sql.SQL("s.record->>{}").format(key)
    if isinstance(field, models.FloatField):
        return sql.SQL("jsonb_typeof({}) = 'number' AND strpos({}, '.') > 0").format(value, text)
    if isinstance(field, models.BigIntegerField):
        return sql.SQL("jsonb_typeof({}) = 'number' AND strpos({}, '.') = 0").format(value, text)
    if isinstance(field, models.DateTimeField):
        return sql.SQL("{} = {}").format(
            text, canonical_time_sql(sql.SQL("({})::timestamptz").format(text))
        )
    if isinstance(field, models.JSONField):
        return sql.SQL("TRUE")
    return sql.SQL("jsonb_typeof({}) = 'string'").format(value)


def _extra(model: type[HistoryRow]) -> sql.Composable:
    """SQL for `extra`: the record without the fields the typed columns reproduce; NULL if empty."""
    dropped: list[sql.Composable] = []
    if model.key_field is not None:  # a key is a string: its id gives it back exactly
        dropped.append(sql.Literal(model.key_record))
    dropped.append(
        sql.SQL("CASE WHEN s.uf < {} THEN 'updated_at' END").format(sql.Literal(UPDATED_VERBATIM))
    )
    for field in model.typed_fields():
        dropped.append(
            sql.SQL("CASE WHEN {} THEN {} END").format(
                _exact(model, field), sql.Literal(model.record_key(field.name))
            )
        )
    return sql.SQL(
        "nullif(s.record - array_remove(ARRAY[{}]::text[], NULL), '{{}}'::jsonb)"
    ).format(sql.SQL(", ").join(dropped))


def staged_rows_insert(channel: str, model: type[HistoryRow]) -> sql.Composed:
    """`INSERT ... SELECT` of the staged rows of `channel` whose key the table does not hold."""
    typed = model.typed_fields()
    keyed = model.key_field is not None
    columns = [
        *("time", "writer_id", "n", "seq", "received_us", "received_at", "updated_format"),
        "extra",
        *(["symbol_id"] if keyed else []),
        *(field.column for field in typed),
    ]
    key_join = sql.SQL("JOIN {} y ON y.name = st.record->>{}").format(
        _SYMBOLS, sql.Literal(model.key_record)
    )
    return sql.SQL(
        """INSERT INTO {table} ({columns})
        SELECT s.time, s.writer_id, s.n, s.seq,
               CASE WHEN s.u IS NOT NULL AND s.delta > {low} AND s.delta < {high}
                    THEN s.delta::integer END,
               CASE WHEN s.u IS NOT NULL AND NOT (s.delta > {low} AND s.delta < {high})
                    THEN s.received_at END,
               s.uf, {extra} {key_value} {typed}
        FROM (
            SELECT DISTINCT ON (st.writer, st.n)
                   st.n, st.seq, st.received_at, st.record, st.u,
                   coalesce(st.u, st.received_at) AS time, coalesce(w.id, 0) AS writer_id,
                   (extract(epoch FROM st.received_at) - extract(epoch FROM st.u)) * 1000000
                       AS delta,
                   {updated_format} AS uf
                   {key_id}
            FROM (SELECT *, {u} AS u FROM {staged} WHERE channel = {channel}) AS st
            {updated_us}
            LEFT JOIN {writers} w ON w.writer = st.writer
            {key_join}
            ORDER BY st.writer, st.n
        ) AS s
        WHERE NOT EXISTS (
            SELECT 1 FROM {table} t
            WHERE {key_match} t.time = s.time AND t.writer_id = s.writer_id AND t.n = s.n
        )"""
    ).format(
        table=sql.Identifier(model._meta.db_table),
        columns=sql.SQL(", ").join(map(sql.Identifier, columns)),
        low=sql.Literal(-_INT4),
        high=sql.Literal(_INT4),
        extra=_extra(model),
        updated_format=_UPDATED_FORMAT,
        updated_us=_UPDATED_US,
        key_value=sql.SQL(", s.symbol_id") if keyed else sql.SQL(""),
        typed=sql.SQL("").join(sql.SQL(", {}").format(_extract(model, f)) for f in typed),
        key_id=sql.SQL(", y.id AS symbol_id") if keyed else sql.SQL(""),
        u=_UPDATED,
        staged=_STAGED,
        channel=sql.Literal(channel),
        writers=_WRITERS,
        key_join=key_join if keyed else sql.SQL(""),
        key_match=sql.SQL("t.symbol_id = s.symbol_id AND") if keyed else sql.SQL(""),
    )


# Market data: the tick insert feeds the 1-minute candles with the rows it actually inserted
# (RETURNING skips replayed rows, so a replay never counts a tick twice). Within the batch the
# first/last tick of each minute is the smallest/largest [epoch, writer, n high, n low, price,
# volume] array: no per-minute sort, unlike array_agg(... ORDER BY ...), which cost ~4 % of the
# load rate. float8 epoch seconds keep distinct microseconds apart (resolution 0.24 us until
# 2106); n is split in halves of 26 and 37 bits so that each is exact in a float8; so the
# (time, writer_id, n) order decides and price/volume never do. Against the stored candle the
# kept (time, writer, n) of its open and close decide, so batches may arrive in any order.
_N_LOW_BITS: Final = 26
_CANDLE_UPSERT: Final = sql.SQL(
    """, candles AS (
        INSERT INTO {candles} AS c (symbol_id, bucket, open, open_time, open_writer, open_n,
                                    high, low, close, close_time, close_writer, close_n,
                                    volume, ticks)
        SELECT symbol_id, bucket, first[5], first_time, first[2]::integer,
               first[3]::bigint << {bits} | first[4]::bigint, high, low,
               last[5], last_time, last[2]::integer, last[3]::bigint << {bits} | last[4]::bigint,
               last[6], ticks
        FROM (
            SELECT symbol_id, date_bin('1 minute', time, {origin}) AS bucket,
                   min(ARRAY[date_part('epoch', time), writer_id, (n >> {bits})::float8,
                             (n & {mask})::float8, last_price]) AS first,
                   max(ARRAY[date_part('epoch', time), writer_id, (n >> {bits})::float8,
                             (n & {mask})::float8, last_price, volume_24h]) AS last,
                   min(time) AS first_time, max(time) AS last_time,
                   max(last_price) AS high, min(last_price) AS low, count(*) AS ticks
            FROM inserted
            GROUP BY symbol_id, bucket
        ) AS batch
        ON CONFLICT (symbol_id, bucket) DO UPDATE SET
            open = CASE WHEN {open_new} THEN EXCLUDED.open ELSE c.open END,
            open_writer = CASE WHEN {open_new} THEN EXCLUDED.open_writer ELSE c.open_writer END,
            open_n = CASE WHEN {open_new} THEN EXCLUDED.open_n ELSE c.open_n END,
            open_time = least(c.open_time, EXCLUDED.open_time),
            high = greatest(c.high, EXCLUDED.high),
            low = least(c.low, EXCLUDED.low),
            close = CASE WHEN {close_new} THEN EXCLUDED.close ELSE c.close END,
            volume = CASE WHEN {close_new} THEN EXCLUDED.volume ELSE c.volume END,
            close_writer = CASE WHEN {close_new} THEN EXCLUDED.close_writer
                                ELSE c.close_writer END,
            close_n = CASE WHEN {close_new} THEN EXCLUDED.close_n ELSE c.close_n END,
            close_time = greatest(c.close_time, EXCLUDED.close_time),
            ticks = c.ticks + EXCLUDED.ticks
    )
    SELECT count(*) FROM inserted"""
).format(
    candles=sql.Identifier(MinuteCandle._meta.db_table),
    origin=sql.Literal(CANDLE_ORIGIN),
    bits=sql.Literal(_N_LOW_BITS),
    mask=sql.Literal(2**_N_LOW_BITS - 1),
    open_new=sql.SQL(
        "(EXCLUDED.open_time, EXCLUDED.open_writer, EXCLUDED.open_n)"
        " < (c.open_time, c.open_writer, c.open_n)"
    ),
    close_new=sql.SQL(
        "(EXCLUDED.close_time, EXCLUDED.close_writer, EXCLUDED.close_n)"
        " > (c.close_time, c.close_writer, c.close_n)"
    ),
)


def _with_candles(insert: sql.Composable) -> sql.Composed:
    returning = sql.SQL(" RETURNING symbol_id, time, writer_id, n, last_price, volume_24h)")
    return sql.Composed([sql.SQL("WITH inserted AS ("), insert, returning, _CANDLE_UPSERT])


INSERTS: Final = {channel: staged_rows_insert(channel, m) for channel, m in HISTORY_MODELS.items()}
INSERTS["market_data"] = _with_candles(INSERTS["market_data"])

# --- ticks split by the recorder (history/tick_rows.py) ----------------------------------------
# A typical tick is COPYed (binary) into typed columns, the record's other fields as `extra`:
# no JSONB record to parse or take apart per row. Keys are unique in it (the recorder dedupes
# the batch), and symbol and writer are already their ids (`SYMBOL_IDS`, `WRITER_IDS`).
TICK_STAGING_TABLE: Final = "history_staging_tick"
_TICK_STAGED: Final = sql.Identifier(TICK_STAGING_TABLE)
_TICK_COLUMNS: Final = (
    ("writer_id", "integer"),
    ("n", "bigint"),
    ("seq", "bigint"),
    ("symbol_id", "integer"),
    *TICK_VALUES,
)
# After the tick's columns, whether its key must be looked up (`LATEST_TIMES`).
_TICK_STAGED_COLUMNS: Final = (*_TICK_COLUMNS, ("probe", "boolean"))
TICK_COPY_TYPES: Final = [kind for _, kind in _TICK_STAGED_COLUMNS]
CREATE_TICK_STAGING: Final = sql.SQL(
    "CREATE TEMP TABLE IF NOT EXISTS {} ({}) ON COMMIT DELETE ROWS"
).format(
    _TICK_STAGED,
    sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(kind))
        for name, kind in _TICK_STAGED_COLUMNS
    ),
)
CLEAR_TICK_STAGING: Final = sql.SQL("DELETE FROM {}").format(_TICK_STAGED)
COPY_TICKS: Final = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
    _TICK_STAGED, sql.SQL(", ").join(sql.Identifier(name) for name, _ in _TICK_STAGED_COLUMNS)
)
# New symbols and writers of the typed rows, from the recorder's sets (%s: a text[], a bigint[]).
ENSURE_SYMBOLS_OF: Final = sql.SQL(
    """INSERT INTO {symbols} (name)
    SELECT k FROM unnest(%s::text[]) AS s(k)
    WHERE NOT EXISTS (SELECT 1 FROM {symbols} y WHERE y.name = s.k)
    ORDER BY k
    ON CONFLICT DO NOTHING"""
).format(symbols=_SYMBOLS)
ENSURE_WRITERS_OF: Final = sql.SQL(
    """INSERT INTO {writers} (writer)
    SELECT w FROM unnest(%s::bigint[]) AS s(w)
    WHERE w <> 0 AND NOT EXISTS (SELECT 1 FROM {writers} x WHERE x.writer = s.w)
    ORDER BY w
    ON CONFLICT DO NOTHING"""
).format(writers=_WRITERS)
SYMBOL_IDS: Final = sql.SQL("SELECT name, id FROM {} WHERE name = ANY(%s::text[])").format(_SYMBOLS)
WRITER_IDS: Final = sql.SQL("SELECT writer, id FROM {} WHERE writer = ANY(%s::bigint[])").format(
    _WRITERS
)
# Each symbol's latest stored tick time from the batch's earliest on (%s: that time, then the
# symbol ids; NULL: none). A staged tick later than its symbol's cannot be stored yet: its key
# is not looked up (the key decides the symbol and the time). In stream order, that is all of a
# batch but ticks that come late, and replays. Read under the write lock, which every tick
# insert holds, so nothing is inserted between this and the insert.
LATEST_TIMES: Final = sql.SQL(
    """SELECT y.id, (
        SELECT t.time FROM {table} t
        WHERE t.symbol_id = y.id AND t.time >= %s
        ORDER BY t.time DESC LIMIT 1
    ) FROM unnest(%s::integer[]) AS y(id)"""
).format(table=sql.Identifier(MarketTick._meta.db_table))


def _typed_tick_insert() -> sql.Composed:
    """The staged ticks whose key the table does not hold, in the staging table's order.

    The key look-up is a LATERAL probe of the `(symbol_id, time)` index per row, by
    construction: as `NOT EXISTS`, the planner, seeing a never-analysed staging table of
    thousands of rows, chose a hash anti join over every stored tick (0.9 s a batch at 1M rows).
    It runs only for a row staged with `probe` (`s.probe` is a one-time filter of the probe:
    false, no index scan); the others are later than anything stored for their symbol.
    """
    table = sql.Identifier(MarketTick._meta.db_table)
    columns = [name for name, _ in _TICK_COLUMNS]
    return sql.SQL(
        """INSERT INTO {table} ({columns})
        SELECT {staged_columns}
        FROM {staged} s
        LEFT JOIN LATERAL (
            SELECT true AS found FROM {table} t
            WHERE s.probe AND t.symbol_id = s.symbol_id AND t.time = s.time
              AND t.writer_id = s.writer_id AND t.n = s.n
            LIMIT 1
        ) AS stored ON true
        WHERE stored.found IS NULL"""
    ).format(
        table=table,
        columns=sql.SQL(", ").join(map(sql.Identifier, columns)),
        staged_columns=sql.SQL(", ").join(sql.Identifier("s", name) for name in columns),
        staged=_TICK_STAGED,
    )


TICK_INSERT: Final = _with_candles(_typed_tick_insert())
