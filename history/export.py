"""Bulk export: every row of a time range as CSV or NDJSON, streamed from a server-side cursor.

The view validates the query and checks the scope (synchronously, on Django's connection); the
body is an async iterator over a psycopg `AsyncConnection` of its own with a named (server-side)
cursor, so rows leave PostgreSQL `CHUNK_ROWS` at a time and the web process holds one chunk per
export, whatever the range. Under ASGI Django serves an async iterator without buffering it.
Rows are the same items as the JSON API's (`history.selectors`), in `time` order.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any, Final

import orjson
import psycopg
from django.db import connection, connections

from history.models import HISTORY_MODELS, Symbol
from history.params import ExportQuery
from history.routers import read_alias
from history.selectors import columns_sql, decoders

log = logging.getLogger(__name__)

# Rows per round trip to PostgreSQL and per chunk of the body: big enough that the round trips
# cost little, small enough that a chunk is ~1 MB at most.
CHUNK_ROWS: Final = 2000
CONTENT_TYPES: Final = {"csv": "text/csv; charset=utf-8", "ndjson": "application/x-ndjson"}


def csv_columns(kind: str) -> list[str]:
    """The CSV header: the key, the contract's fields, seq, received_at, then `extra` (JSON)."""
    model = HISTORY_MODELS[kind]
    named = [model.record_key(field.name) for field in model.typed_fields()]
    key = [model.key_record] if model.key_field is not None else []
    return [*key, *named, "updated_at", "seq", "received_at", "extra"]


def _statement(kind: str, symbol_ids: Sequence[int] | None, ascending: bool) -> str:
    model = HISTORY_MODELS[kind]
    table = connection.ops.quote_name(model._meta.db_table)
    direction = "ASC" if ascending else "DESC"
    order = f"t.time {direction}, t.writer_id {direction}, t.n {direction}"
    where = "t.time >= %(start)s AND t.time < %(end)s"
    if model.key_field is None:
        return (
            f"SELECT NULL, {columns_sql(model, 't.')} FROM {table} t "  # noqa: S608
            f"WHERE {where} ORDER BY {order}"
        )
    symbols = connection.ops.quote_name(Symbol._meta.db_table)
    if symbol_ids is not None:
        where += " AND t.symbol_id = ANY(%(ids)s)"
    return (
        f"SELECT y.name, {columns_sql(model, 't.')} FROM {table} t "  # noqa: S608
        f"JOIN {symbols} y ON y.id = t.symbol_id WHERE {where} ORDER BY {order}"
    )


def _conninfo() -> str:
    settings = connections[read_alias()].settings_dict
    return psycopg.conninfo.make_conninfo(
        dbname=settings["NAME"],
        user=settings.get("USER") or None,
        password=settings.get("PASSWORD") or None,
        host=settings.get("HOST") or None,
        port=settings.get("PORT") or None,
        application_name="dashboard-history-export",
        connect_timeout=3,
    )


def _encoder(query: ExportQuery) -> Any:
    decode = decoders()[query.type]
    if query.format == "ndjson":

        def ndjson(rows: list[Sequence[Any]]) -> bytes:
            return b"".join(orjson.dumps(decode(row[1:], row[0])) + b"\n" for row in rows)

        return ndjson
    columns = csv_columns(query.type)
    named = columns[:-1]

    def to_csv(rows: list[Sequence[Any]]) -> bytes:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        for row in rows:
            item = decode(row[1:], row[0])
            cells = [_cell(item.pop(name, None)) for name in named]
            writer.writerow([*cells, orjson.dumps(item).decode() if item else ""])
        return out.getvalue().encode()

    return to_csv


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    return value


async def export_body(query: ExportQuery, symbol_ids: Sequence[int] | None) -> AsyncIterator[bytes]:
    """The response body, chunk by chunk (a CSV starts with its header line)."""
    if query.format == "csv":
        yield (",".join(csv_columns(query.type)) + "\n").encode()
    if symbol_ids is not None and not symbol_ids:
        return  # none of the symbols was ever recorded
    encode = _encoder(query)
    params = {"start": query.start, "end": query.end, "ids": list(symbol_ids or [])}
    statement = _statement(query.type, symbol_ids, query.ascending)
    rows = 0
    try:
        # Named: a server-side cursor, read CHUNK_ROWS at a time (in the connection's
        # transaction, so nothing is materialised as a WITH HOLD cursor would be).
        async with (
            await psycopg.AsyncConnection.connect(_conninfo()) as conn,
            conn.cursor(name="history_export") as cursor,
        ):
            await cursor.execute(statement, params)
            while chunk := await cursor.fetchmany(CHUNK_ROWS):
                rows += len(chunk)
                yield encode(chunk)
    except psycopg.Error as exc:
        # The status line is sent: all that is left is to cut the body short (the client sees
        # an incomplete chunked response, not a complete-looking file).
        log.warning("history export failed", extra={"error": str(exc)[:300], "rows": rows})
        raise
