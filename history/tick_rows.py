"""A market-data row split into the tick table's typed columns by the recorder, in Python.

The batch write COPYs ticks into a typed staging table (binary COPY, `history/batch_sql.py`
`TICK_STAGING`): `time`, `received_us` / `received_at`, `updated_format`, the six prices and
`extra` computed here, so that PostgreSQL does not parse a JSONB record per tick. What it
computes is exactly what the JSONB split (`batch_sql.staged_rows_insert`) stores for the same
row, column by column (tested side by side, `tests/integration/test_history_tick_rows.py`); a
row whose split is not plainly the same (an `updated_at` spelled otherwise than the three
rebuilt spellings, a value that is not a JSON number, a symbol that is not a string) gives None
and goes the JSONB way.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any, Final

import orjson

from history.models import UPDATED_FORMATS, MarketTick

# The typed fields of the tick table, in the staging table's column order.
TICK_FIELDS: Final = tuple(field.column for field in MarketTick.typed_fields())
# The spellings of updated_at that UPDATED_FORMATS rebuild: RFC 3339 in UTC with Z and 6, 3 or
# no fraction digits. By length: (the index into UPDATED_FORMATS, the characters at 4, 7, 10,
# 13, 16 and 19); `fromisoformat` then checks the rest (ASCII digits there, and the values).
_SHAPE_BY_LENGTH: Final = {
    len("2026-01-31T12:00:00.123456Z"): (
        UPDATED_FORMATS.index('YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        "--T::.",
    ),
    len("2026-01-31T12:00:00.123Z"): (
        UPDATED_FORMATS.index('YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
        "--T::.",
    ),
    len("2026-01-31T12:00:00Z"): (UPDATED_FORMATS.index('YYYY-MM-DD"T"HH24:MI:SS"Z"'), "--T::Z"),
}
_INT4: Final = 2**31
_BIGINT_MIN: Final = -(2**63)
_BIGINT_MAX: Final = 2**63 - 1
_US: Final = timedelta(microseconds=1)
# A float whose JSON (orjson's shortest spelling) has no fraction once PostgreSQL reads it as a
# numeric (`1e+16` -> 10000000000000000) is not given back exactly by the float column: `extra`
# keeps it. Only integral values this large are spelled with a positive exponent.
_EXPONENT_FROM: Final = 1e15

# What `tick_values` gives for a tick, in this order (the typed staging table's columns after
# the row key, seq and symbol).
TICK_VALUES: Final = (
    ("time", "timestamptz"),
    ("received_us", "integer"),
    ("received_at", "timestamptz"),
    ("updated_format", "smallint"),
    *((field, "double precision") for field in TICK_FIELDS),
    ("extra", "jsonb"),
)
TickValues = tuple[Any, ...]
# The record's fields the typed columns give back (when exact): the rest is `extra`.
_TYPED_KEYS: Final = frozenset({"symbol", "updated_at", *TICK_FIELDS})


def _float_exact(value: float) -> bool:
    """True when PostgreSQL's numeric text of the value's JSON has a '.' (the JSONB split's rule).

    That text has a fraction unless the JSON spells the value with an exponent no smaller than
    its mantissa's fraction digits (`1e+16`, `1.5e+20`).
    """
    text = orjson.dumps(value).decode()
    mantissa, e, exponent = text.partition("e")
    if not e:
        return "." in text
    _, _, fraction = mantissa.partition(".")
    return len(fraction) - int(exponent) > 0


def tick_values(record: dict[str, Any], received_at: datetime) -> tuple[str, TickValues] | None:
    """(symbol, (time, received_us, received_at, updated_format, *prices, extra)), or None.

    The values in `TICK_VALUES`' order; `extra` a dict, or None when empty. None: the row
    takes the JSONB split (see the module docstring).
    """
    symbol = record.get("symbol")
    if type(symbol) is not str or received_at.tzinfo is None:
        return None
    updated = record.get("updated_at")
    if updated is None:
        if "updated_at" in record:
            return None
        time, received_us, received_whole, code = received_at, None, None, None
    else:
        if type(updated) is not str:
            return None
        shape = _SHAPE_BY_LENGTH.get(len(updated))
        if shape is None or updated[4:20:3] != shape[1] or updated[-1] != "Z":
            return None
        try:
            time = datetime.fromisoformat(updated)
        except ValueError:  # 24:00:00, 23:59:60, day 31 of a 30-day month, year 0
            return None
        code = shape[0]
        delta = (received_at - time) // _US
        if -_INT4 < delta < _INT4:
            received_us, received_whole = delta, None
        else:
            received_us, received_whole = None, received_at
    prices: list[float | None] = []
    kept: list[str] = []  # typed fields `extra` keeps as written
    for name in TICK_FIELDS:
        value = record.get(name)
        if type(value) is float:
            if not (-_EXPONENT_FROM < value < _EXPONENT_FROM or _float_exact(value)):
                kept.append(name)
            prices.append(value + 0.0)  # -0.0 -> 0.0, as the numeric text '0.0' reads
        elif type(value) is int and _BIGINT_MIN <= value <= _BIGINT_MAX:
            kept.append(name)  # an integer stays as written
            prices.append(float(value))
        elif value is None:
            if name in record:
                kept.append(name)  # a JSON null, kept as by the JSONB split
            prices.append(None)
        else:
            return None
    extra = None
    if kept or not record.keys() <= _TYPED_KEYS:  # fields the contract does not name
        extra = {k: v for k, v in record.items() if k not in _TYPED_KEYS or k in kept} or None
    return symbol, (time, received_us, received_whole, code, *prices, extra)


def utc_day(moment: datetime) -> date:
    """The UTC day of an aware datetime (the partition it goes to)."""
    return (moment if moment.tzinfo is UTC else moment.astimezone(UTC)).date()
