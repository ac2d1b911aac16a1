"""GET /api/v1/history against real PostgreSQL: pages, candles, refusals, authentication."""

from __future__ import annotations

import itertools
import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import psycopg
import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client

from history.models import MarketTick
from history.selectors import rfc3339, symbol_id
from history.services import history_rows_write, staging_create
from history.stream_rows import StreamRow
from tests.history_rows import api_item, store, stream_row
from tests.history_rows import tick_row as tick

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

URL = "/api/v1/history"
T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
_ids = itertools.count(1)


@pytest.fixture
def api(client: Client, django_user_model: type[User]) -> Client:
    client.force_login(django_user_model.objects.create_user("quant", password="pw-123456789"))
    return client


def get(api: Client, **params: str) -> dict[str, Any]:
    response = api.get(URL, params)
    assert response.status_code == 200, response.content
    body: dict[str, Any] = response.json()
    return body


def test_a_page_has_the_contract_shape_and_items_carry_seq_and_received_at(api: Client) -> None:
    btc = tick("BTCUSDT", T0, 1.5)
    store([btc, tick("ETHUSDT", T0, 2.5)])
    body = get(api, type="market_data", symbol="BTCUSDT")
    assert set(body) == {"type", "symbol", "limit", "data", "next"}
    assert (body["type"], body["symbol"], body["limit"], body["next"]) == (
        "market_data",
        "BTCUSDT",
        100,
        None,
    )
    (item,) = body["data"]
    assert item == api_item(btc)
    assert get(api, type="market_data")["symbol"] is None
    assert len(get(api, type="market_data")["data"]) == 2


def test_time_range_is_from_inclusive_to_exclusive(api: Client) -> None:
    store([tick("X", T0 + timedelta(minutes=m), m) for m in range(10)])
    body = get(
        api,
        type="market_data",
        symbol="X",
        **{"from": rfc3339(T0 + timedelta(minutes=2)), "to": "2026-05-01T14:07:00+02:00"},
    )
    assert [item["last_price"] for item in body["data"]] == [6, 5, 4, 3, 2]


def test_symbol_filters_orders_by_symbol_and_strategies_by_id(api: Client) -> None:
    def order(order_id: str, symbol: str) -> StreamRow:
        record = {"id": order_id, "symbol": symbol, "side": "BUY", "quantity": 1.0, "status": "NEW"}
        return stream_row("orders", record, T0)

    store([order("o1", "BTCUSDT"), order("o2", "ETHUSDT")])
    assert [o["id"] for o in get(api, type="orders", symbol="ETHUSDT")["data"]] == ["o2"]
    strategy = stream_row("strategies", {"id": "mm-1", "status": "RUNNING"}, T0)
    account = stream_row("account", {"total_balance": 5.0}, T0)
    store([strategy, account])
    assert get(api, type="strategies", symbol="mm-1")["data"] == [api_item(strategy)]
    assert get(api, type="strategies", symbol="other")["data"] == []
    assert get(api, type="account")["data"] == [api_item(account)]


def test_walking_pages_while_rows_are_inserted_gives_no_duplicates_and_no_gaps(
    api: Client,
) -> None:
    # given 200 ticks, many sharing a timestamp (ties are broken by the row key)
    rng = random.Random(5)
    store([tick("X", T0 + timedelta(seconds=rng.randrange(60)), float(i)) for i in range(200)])
    newest_first = MarketTick.objects.order_by("-time", "-writer_id", "-n")
    expected = list(newest_first.values_list("seq", flat=True))
    walked: list[int] = []
    cursor: str | None = None
    newest = T0 + timedelta(seconds=60)
    for page in range(100):
        params = {"type": "market_data", "symbol": "X", "limit": "7"}
        body = get(api, **params, **({"cursor": cursor} if cursor else {}))
        walked += [item["seq"] for item in body["data"]]
        # when rows keep arriving between pages: newer ones, and one tied with the last row
        # sent (a larger key at the same time sorts before it, so it belongs to no later page)
        last_time = datetime.fromisoformat(body["data"][-1]["updated_at"])
        store([tick("X", newest + timedelta(seconds=page), -1.0), tick("X", last_time, -2.0)])
        cursor = body["next"]
        if cursor is None:
            break
    # then the walk is exactly the rows that existed when it began, newest first
    assert walked == expected


def test_a_page_never_exceeds_the_limit_and_next_is_null_at_the_end(api: Client) -> None:
    store([tick("X", T0 + timedelta(seconds=s), s) for s in range(5)])
    first = get(api, type="market_data", limit="5")
    assert len(first["data"]) == 5
    assert first["next"] is None
    second = get(api, type="market_data", limit="4")
    assert len(second["data"]) == 4
    assert len(get(api, type="market_data", limit="4", cursor=second["next"])["data"]) == 1


def reference_candles(ticks: list[MarketTick], step: timedelta) -> list[dict[str, Any]]:
    """OHLC computed the slow, obvious way: buckets from the UTC origin, ticks by (time, key)."""
    origin = datetime(2000, 1, 1, tzinfo=UTC)
    buckets: dict[datetime, list[MarketTick]] = defaultdict(list)
    for t in sorted(ticks, key=lambda t: (t.time, t.writer_id, t.n)):
        buckets[origin + step * ((t.time - origin) // step)].append(t)
    return [
        {
            "time": rfc3339(start),
            "open": buckets[start][0].last_price,
            "high": max(t.last_price for t in buckets[start]),
            "low": min(t.last_price for t in buckets[start]),
            "close": buckets[start][-1].last_price,
            "volume": buckets[start][-1].volume_24h,
            "ticks": len(buckets[start]),
        }
        for start in sorted(buckets, reverse=True)
    ]


def walk_candles(api: Client, limit: int, **params: str) -> list[dict[str, Any]]:
    candles: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(10_000):
        page = get(api, **params, limit=str(limit), **({"cursor": cursor} if cursor else {}))
        assert len(page["data"]) <= limit
        candles += page["data"]
        if (cursor := page["next"]) is None:
            return candles
    raise AssertionError("candle pages never ended")


def write_ticks(ticks: list[tuple[str, datetime, float, float | None]], batches: int) -> None:
    """Write ticks through the recorder's write path, in `batches` batches, as given."""
    db = connection.settings_dict
    dsn = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    rows = []
    for symbol, moment, price, volume in ticks:
        n = next(_ids)
        record = {"symbol": symbol, "last_price": price, "updated_at": rfc3339(moment)}
        if volume is not None:
            record["volume_24h"] = volume
        rows.append(StreamRow(n, 0, "market_data", n, moment, orjson.dumps(record).decode()))
    with psycopg.connect(dsn) as conn:
        staging_create(conn=conn)
        size = -(-len(rows) // batches)
        for first in range(0, len(rows), size):
            history_rows_write(conn=conn, rows=rows[first : first + size])


@pytest.mark.django_db(transaction=True)  # the write path commits on its own connection
@pytest.mark.parametrize("seed", [1, 2])
def test_candles_equal_a_python_reference(api: Client, seed: int) -> None:
    # given random ticks over three days, with gaps, equal prices and equal timestamps,
    # written out of order in several batches
    rng = random.Random(seed)
    moments = [T0 + timedelta(seconds=rng.randrange(3 * 86_400)) for _ in range(400)]
    moments += rng.sample(moments, 40)  # ties on time: open/close decided by the row key
    ticks = [
        ("X", m, rng.choice([100.0, round(rng.uniform(90, 110), 2)]),
         rng.choice([None, rng.uniform(0, 1e6)]))
        for m in moments
    ]  # fmt: skip
    rng.shuffle(ticks)
    write_ticks([*ticks, ("Y", T0, 1.0, None)], batches=5)
    mine = list(MarketTick.objects.filter(symbol_id=symbol_id("X")))
    assert len(mine) == len(ticks)
    for interval, step in INTERVAL_STEPS.items():
        # when walked in small pages
        got = walk_candles(api, 7, type="market_data", symbol="X", interval=interval)
        # then they equal the reference
        assert got == reference_candles(mine, step), interval
        # and an unaligned range selects the (whole) candles that start inside it
        start, end = T0 + timedelta(hours=5, seconds=17), T0 + timedelta(hours=40, seconds=3)
        ranged = walk_candles(
            api, 1000, type="market_data", symbol="X", interval=interval,
            **{"from": rfc3339(start), "to": rfc3339(end)},
        )  # fmt: skip
        assert ranged == [c for c in got if start <= datetime.fromisoformat(c["time"]) < end], (
            interval
        )


INTERVAL_STEPS = {
    "1m": timedelta(minutes=1),
    "5m": timedelta(minutes=5),
    "1h": timedelta(hours=1),
    "1d": timedelta(days=1),
}


def test_candles_of_an_unknown_symbol_are_empty(api: Client) -> None:
    assert get(api, type="market_data", symbol="NONE", interval="1m") == {
        "type": "market_data",
        "symbol": "NONE",
        "limit": 100,
        "data": [],
        "next": None,
    }


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("", "type"),
        ("type=trades", "type"),
        ("type=orders&limit=0", "limit"),
        ("type=orders&limit=1001", "limit"),
        ("type=orders&limit=abc", "limit"),
        ("type=orders&from=2026-05-01T12:00:00", "from"),
        ("type=orders&to=not-a-time", "to"),
        ("type=orders&from=2026-05-02T00:00:00Z&to=2026-05-01T00:00:00Z", "to"),
        ("type=orders&from=2026-05-01T12:00:00+02:00", "from"),  # '+' not encoded
        ("type=orders&cursor=garbage", "cursor"),
        ("type=market_data&symbol=X&interval=7m", "interval"),
        ("type=positions&symbol=X&interval=1m", "interval"),
        ("type=market_data&interval=1m", "symbol"),
        ("type=market_data&symbol=..%2F..%2Fetc", "symbol"),
        ("type=market_data&symbol=%00", "symbol"),
        ("type=account&symbol=X", "symbol"),
        ("type=orders&limit=1&limit=2", "limit"),
        ("type=orders&page=2", "page"),
    ],
)
def test_every_bad_parameter_is_a_400_naming_it(api: Client, query: str, parameter: str) -> None:
    response = api.get(f"{URL}?{query}")
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "invalid_parameter"
    assert body["parameter"] == parameter
    assert body["message"]


def test_a_row_cursor_is_refused_for_candles(api: Client) -> None:
    store([tick("X", T0 + timedelta(seconds=s), s) for s in range(3)])
    row_cursor = get(api, type="market_data", symbol="X", limit="1")["next"]
    response = api.get(
        URL, {"type": "market_data", "symbol": "X", "interval": "1m", "cursor": row_cursor}
    )
    assert response.status_code == 400
    assert response.json()["parameter"] == "cursor"


def test_authentication_is_required(client: Client) -> None:
    response = client.get(URL, {"type": "market_data"})
    assert response.status_code in (401, 403)


def test_the_openapi_schema_describes_the_endpoint(client: Client) -> None:
    response = client.get("/api/schema", {"format": "json"})
    assert response.status_code == 200
    operation = response.json()["paths"]["/api/v1/history"]["get"]
    names = {p["name"] for p in operation["parameters"]}
    assert names == {
        "type",
        "symbol",
        "from",
        "to",
        "limit",
        "cursor",
        "interval",
        "format",
        "order",
    }
    assert set(operation["responses"]) >= {"200", "400", "403"}
