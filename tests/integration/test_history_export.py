"""GET /api/v1/history?format=csv|ndjson: a whole range streamed, with the JSON API's rules."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import psycopg
import pytest
import redis
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client

from history.export import CHUNK_ROWS, csv_columns, export_body
from history.params import parse_export_query
from history.selectors import rfc3339
from tests.history_rows import api_item, store, stream_row, tick_row
from tests.integration.test_access_http import bearer, issue

# The export reads on a connection of its own: the rows must be committed.
pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

URL = "/api/v1/history"
T0 = datetime(2026, 5, 1, 23, 0, tzinfo=UTC)
TOO_MANY = ",".join(f"S{i}" for i in range(101))
DAY = {"from": rfc3339(T0 - timedelta(hours=1)), "to": rfc3339(T0 + timedelta(days=1))}


@pytest.fixture
def user(django_user_model: type[User]) -> User:
    return django_user_model.objects.create_user("quant", password="pw-123456789")


@pytest.fixture
def api(client: Client, user: User) -> Client:
    client.force_login(user)
    return client


async def export_chunks(**params: str) -> list[bytes]:
    """The body the view streams for `params`, chunk by chunk (from its async iterator)."""
    query = parse_export_query({k: [v] for k, v in params.items()}, max_days=7)
    names = query.symbols
    ids = None if names is None else [i for n in names if (i := await symbol_id_async(n))]
    return [chunk async for chunk in export_body(query, ids)]


async def export(**params: str) -> bytes:
    return b"".join(await export_chunks(**params))


async def symbol_id_async(name: str) -> int | None:
    db = connection.settings_dict
    dsn = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        cursor = await conn.execute("SELECT id FROM history_symbol WHERE name = %s", [name])
        row = await cursor.fetchone()
    return None if row is None else int(row[0])


def ndjson(body: bytes) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in body.splitlines()]


@pytest.fixture
def ticks() -> list[Any]:
    # across midnight (two day partitions), more rows than one chunk, three symbols, ties
    rows = [
        tick_row(("BTCUSDT", "ETHUSDT", "SOLUSDT")[i % 3], T0 + timedelta(seconds=i // 2), i + 0.5)
        for i in range(2 * CHUNK_ROWS + 7)
    ]
    store(rows)
    return rows


async def test_ndjson_streams_the_whole_range_in_time_order_either_way(
    ticks: list[Any],
) -> None:
    body = await export(type="market_data", symbol="BTCUSDT", format="ndjson", **DAY)
    expected = [
        api_item(row) for row in ticks if orjson.loads(row.record_json)["symbol"] == "BTCUSDT"
    ]
    assert ndjson(body) == expected
    # and newest first, the same items reversed
    newest_first = await export(
        type="market_data", symbol="BTCUSDT", format="ndjson", order="desc", **DAY
    )
    assert ndjson(newest_first) == expected[::-1]


async def test_several_symbols_are_merged_in_time_order(
    ticks: list[Any],
) -> None:
    body = await export(
        type="market_data", symbol="SOLUSDT,BTCUSDT,NOPE,BTCUSDT", format="ndjson", **DAY
    )
    expected = [
        api_item(row)
        for row in ticks
        if orjson.loads(row.record_json)["symbol"] in ("BTCUSDT", "SOLUSDT")
    ]
    got = ndjson(body)
    assert sorted(got, key=lambda item: item["seq"]) == expected  # each row once
    assert [item["updated_at"] for item in got] == sorted(item["updated_at"] for item in got)
    chunks = await export_chunks(type="market_data", format="ndjson", **DAY)
    assert len(ndjson(b"".join(chunks))) == len(ticks)
    # read CHUNK_ROWS rows at a time: the process never holds the whole range
    assert [len(chunk.splitlines()) for chunk in chunks] == [CHUNK_ROWS, CHUNK_ROWS, 7]


@pytest.fixture
def odd_tick() -> None:
    record = {"symbol": "BTCUSDT", "last_price": 50000, "bid_price": 1.5, "venue": "X"}
    store([stream_row("market_data", record, T0)])


async def test_csv_has_a_header_the_contract_fields_and_extra_as_json(
    odd_tick: None,
) -> None:
    body = await export(type="market_data", format="csv", **DAY)
    lines = list(csv.reader(io.StringIO(body.decode())))
    assert lines[0] == csv_columns("market_data")
    (values,) = [dict(zip(lines[0], line, strict=True)) for line in lines[1:]]
    assert values["symbol"] == "BTCUSDT"
    assert values["last_price"] == "50000"  # an integer stays one
    assert values["bid_price"] == "1.5"
    assert values["ask_price"] == ""
    assert values["updated_at"] == ""
    assert values["received_at"] == rfc3339(T0)
    assert orjson.loads(values["extra"]) == {"venue": "X"}


async def test_an_empty_range_is_a_header_or_nothing() -> None:
    body = await export(type="orders", format="csv", **DAY)
    assert body.decode().splitlines() == [",".join(csv_columns("orders"))]
    body = await export(type="account", format="ndjson", **DAY)
    assert body == b""


def test_the_view_streams_the_export_with_its_content_type(api: Client, ticks: list[Any]) -> None:
    params = {"type": "market_data", "symbol": "ETHUSDT", "format": "ndjson", **DAY}
    response = api.get(URL, params)
    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"] == "application/x-ndjson"
    assert response["Content-Disposition"] == (
        'attachment; filename="history-market_data-20260501T220000Z-20260502T230000Z.ndjson"'
    )
    # (an ASGI server iterates the body asynchronously; the sync test client can only say so)
    with pytest.warns(Warning, match="consume asynchronous iterators"):
        body = b"".join(response)
    expected = [api_item(r) for r in ticks if orjson.loads(r.record_json)["symbol"] == "ETHUSDT"]
    assert ndjson(body) == expected
    csv_response = api.get(URL, {**params, "format": "csv"})
    assert csv_response["Content-Type"] == "text/csv; charset=utf-8"
    csv_response.close()


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({"type": "market_data", "format": "ndjson", "to": DAY["to"]}, "from"),
        ({"type": "market_data", "format": "ndjson", "from": DAY["from"]}, "to"),
        ({"type": "market_data", "format": "xml", **DAY}, "format"),
        ({"type": "market_data", "format": "", **DAY}, "format"),
        ({"type": "market_data", "format": "csv", "order": "up", **DAY}, "order"),
        ({"type": "market_data", "format": "csv", "limit": "10", **DAY}, "limit"),
        ({"type": "market_data", "format": "csv", "cursor": "x", **DAY}, "cursor"),
        ({"type": "market_data", "format": "csv", "interval": "1m", **DAY}, "interval"),
        ({"type": "market_data", "format": "csv", "symbol": "A,,B", **DAY}, "symbol"),
        ({"type": "market_data", "format": "csv", "symbol": "A,../etc", **DAY}, "symbol"),
        ({"type": "market_data", "format": "csv", "symbol": TOO_MANY, **DAY}, "symbol"),
        ({"type": "account", "format": "csv", "symbol": "A", **DAY}, "symbol"),
        ({"type": "trades", "format": "csv", **DAY}, "type"),
        ({"type": "orders", "format": "csv", "from": DAY["to"], "to": DAY["from"]}, "to"),
        ({"type": "orders", "format": "csv", "from": DAY["from"],
          "to": rfc3339(T0 + timedelta(days=8))}, "to"),  # past history_export_max_days
    ],
)  # fmt: skip
def test_every_bad_export_parameter_is_a_400_naming_it(
    api: Client, params: dict[str, str], parameter: str
) -> None:
    response = api.get(URL, params)
    assert response.status_code == 400
    assert response.json()["parameter"] == parameter


def test_a_repeated_format_is_refused(api: Client) -> None:
    response = api.get(f"{URL}?type=orders&format=csv&format=ndjson")
    assert response.status_code == 400
    assert response.json()["parameter"] == "format"


@pytest.mark.parametrize(
    ("symbols", "status"),
    [("BTCUSDT", 200), ("ETHUSDT", 403), ("BTCUSDT,ETHUSDT", 403), (None, 403)],
)
def test_a_symbol_narrowed_token_exports_only_its_symbols(
    client: Client, symbols: str | None, status: int
) -> None:
    key = issue(channels=["market_data:BTCUSDT"])
    params = {"type": "market_data", "format": "ndjson", **DAY}
    if symbols is not None:
        params["symbol"] = symbols
    response = client.get(URL, params, **bearer(key))
    assert response.status_code == status
    assert response.streaming == (status == 200)  # refused before any row is read


def test_a_token_without_the_channel_exports_nothing(client: Client) -> None:
    key = issue(channels=["market_data"])
    response = client.get(URL, {"type": "orders", "format": "csv", **DAY}, **bearer(key))
    assert response.status_code == 403


def test_history_requests_are_throttled_per_token(
    client: Client, settings: Any, key_prefix: str, redis_client: redis.Redis
) -> None:
    # (redis_client: deletes the test's keys, the throttle's counts among them, at the end)
    settings.CONFIG = settings.CONFIG.model_copy(
        update={"history_requests_per_minute": 3, "redis_key_prefix": key_prefix.rstrip(":")}
    )
    first, second = issue(channels=["orders"]), issue(channels=["orders"])
    params = {"type": "orders", "format": "ndjson", **DAY}
    statuses = [client.get(URL, params, **bearer(first)).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    refused = client.get(URL, {"type": "orders"}, **bearer(first))  # the JSON API counts too
    assert refused.status_code == 429
    assert int(refused["Retry-After"]) > 0
    assert client.get(URL, params, **bearer(second)).status_code == 200  # another token


def test_a_browser_session_is_not_throttled(
    client: Client,
    settings: Any,
    key_prefix: str,
    redis_client: redis.Redis,
    django_user_model: Any,
) -> None:
    """The dashboard asks for a symbol's candles at each click: a trader is not a scraper."""
    settings.CONFIG = settings.CONFIG.model_copy(
        update={"history_requests_per_minute": 3, "redis_key_prefix": key_prefix.rstrip(":")}
    )
    client.force_login(django_user_model.objects.create_user("trader", "", "pw-1"))
    statuses = {client.get(URL, {"type": "orders"}).status_code for _ in range(10)}
    assert statuses == {200}


def test_the_throttle_takes_uneven_rates_and_serves_when_redis_is_gone(
    client: Client, settings: Any, key_prefix: str, redis_client: redis.Redis
) -> None:
    settings.CONFIG = settings.CONFIG.model_copy(
        update={"history_requests_per_minute": 7, "redis_key_prefix": key_prefix.rstrip(":")}
    )
    key = issue(channels=["orders"])
    statuses = [client.get(URL, {"type": "orders"}, **bearer(key)).status_code for _ in range(8)]
    assert statuses == [200] * 7 + [429]
    # a Redis that does not answer costs the count, not the request
    settings.CONFIG = settings.CONFIG.model_copy(update={"redis_url": "redis://127.0.0.1:9/0"})
    assert client.get(URL, {"type": "orders"}, **bearer(key)).status_code == 200
