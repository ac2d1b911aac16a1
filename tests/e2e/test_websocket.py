"""The `/ws` endpoint against real worker and web processes (contract section 4)."""

from __future__ import annotations

import asyncio
import copy
import random
import time
from typing import Any

import orjson
import pytest

from shared.core.changes import apply_changes
from tests.e2e.stack import Stack, connect, receive, wait_quiet

pytestmark = [pytest.mark.e2e]

CHANNELS = {"market_data", "orders", "positions", "account", "strategies"}
SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT"]


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def tick(stack: Stack, symbol: str, price: float) -> None:
    stack.publish(
        "market_data", symbol, {"symbol": symbol, "last_price": price, "updated_at": now()}
    )


def random_burst(stack: Stack, rng: random.Random, count: int) -> None:
    """Every kind of change: ticks, orders moving on, positions opened and closed, account."""
    for i in range(count):
        kind = rng.choice(["md", "md", "md", "order", "position", "account", "strategy"])
        symbol = rng.choice(SYMBOLS)
        price = round(rng.uniform(1, 100), 2)
        if kind == "md":
            record: dict[str, Any] = {"symbol": symbol, "last_price": price}
            if rng.random() < 0.5:
                record["bid_price"] = price - 0.01
            stack.publish("market_data", symbol, record)
        elif kind == "order":
            stack.publish(
                "orders",
                symbol,
                {
                    "id": f"o{rng.randrange(8)}",
                    "symbol": symbol,
                    "side": rng.choice(["BUY", "SELL"]),
                    "quantity": 1.0,
                    "status": rng.choice(["NEW", "PARTIALLY_FILLED", "FILLED"]),
                    "price": price,
                },
            )
        elif kind == "position":
            quantity = 0.0 if rng.random() < 0.4 else float(rng.randrange(1, 5))
            stack.publish(
                "positions",
                symbol,
                {
                    "symbol": symbol,
                    "quantity": quantity,
                    "mark_price": price,
                },
            )
        elif kind == "account":
            balances = {"USDT": price} if rng.random() < 0.7 else {"USDT": price, "BTC": 0.1}
            stack.publish("account", "main", {"total_balance": price + i, "balances": balances})
        else:
            stack.publish(
                "strategies",
                f"s{rng.randrange(3)}",
                {
                    "id": f"s{rng.randrange(3)}",
                    "status": "RUNNING",
                    "pnl": price,
                },
            )


async def test_snapshot_on_connect_has_the_contract_shape(stack: Stack) -> None:
    tick(stack, "BTCUSDT", 50_000.5)
    async with connect(stack.ws_url()) as ws:
        frame = await receive(ws)
    assert set(frame) == {"type", "seq", "epoch", "timestamp", "data"}
    assert frame["type"] == "snapshot"
    assert isinstance(frame["seq"], int)
    assert isinstance(frame["epoch"], str)
    assert frame["epoch"]
    assert frame["timestamp"].endswith("Z")
    assert set(frame["data"]) == CHANNELS
    assert isinstance(frame["data"]["orders"], list)
    for name in ("market_data", "positions", "account", "strategies"):
        assert isinstance(frame["data"][name], dict)


@pytest.mark.parametrize(("cadence", "interval_ms"), [("web", 250), ("tui", 100)])
async def test_update_latency_is_within_the_cadence_plus_150_ms(
    stack: Stack, cadence: str, interval_ms: int
) -> None:
    async with connect(stack.ws_url(type=cadence, channels="market_data:LATUSDT")) as ws:
        await receive(ws)  # the snapshot
        latencies = []
        for i in range(8):
            price = 1000.0 + i + random.random()
            sent = time.monotonic()
            tick(stack, "LATUSDT", price)
            while True:
                frame = await receive(ws)
                changes = frame.get("changes", {})
                values = [v for k, v in changes.items() if k.startswith("market_data.LATUSDT")]
                if price in values or any(
                    isinstance(v, dict) and v.get("last_price") == price for v in values
                ):
                    break
            latencies.append(time.monotonic() - sent)
    print(f"{cadence} latency ms: {[round(x * 1000) for x in latencies]}")
    assert max(latencies) <= (interval_ms + 150) / 1000


async def test_json_and_msgpack_clients_receive_the_same_updates(stack: Stack) -> None:
    async with (
        connect(stack.ws_url(format="json")) as js,
        connect(stack.ws_url(format="msgpack")) as mp,
    ):
        first_js, first_mp = await receive(js), await receive(mp)
        assert isinstance(first_mp, dict)
        for i in range(30):
            tick(stack, SYMBOLS[i % 4], 10.0 + i)
        target = wait_quiet(stack)
        by_format: list[dict[int, dict[str, Any]]] = [{}, {}]
        for ws, first, seen in ((js, first_js, by_format[0]), (mp, first_mp, by_format[1])):
            seq = first["seq"]
            while seq < target:
                frame = await receive(ws)
                assert frame["type"] == "update"
                seen[frame["seq"]] = frame["changes"]
                seq = frame["seq"]
    common = set(by_format[0]) & set(by_format[1])
    assert common, by_format
    for seq in common:
        assert by_format[0][seq] == by_format[1][seq]


@pytest.mark.parametrize(("cadence", "fmt"), [("web", "json"), ("tui", "msgpack")])
async def test_snapshot_plus_every_update_equals_a_fresh_snapshot(
    stack: Stack, cadence: str, fmt: str
) -> None:
    # given a client holding a snapshot
    async with connect(stack.ws_url(type=cadence, format=fmt)) as ws:
        snapshot = await receive(ws)
        state, seq = copy.deepcopy(snapshot["data"]), snapshot["seq"]
        # when a random burst of every kind of change flows, in waves across many ticks
        rng = random.Random(cadence)
        for _ in range(5):
            random_burst(stack, rng, 80)
            await asyncio.sleep(0.05)
        target = wait_quiet(stack)
        # then applying every update in order gives exactly a fresh client's snapshot
        while seq < target:
            frame = await receive(ws)
            assert frame["type"] == "update", frame
            assert frame["base_seq"] <= seq < frame["seq"]  # the client's own check (4.1)
            assert frame["epoch"] == snapshot["epoch"]
            apply_changes(state, frame["changes"])
            seq = frame["seq"]
    async with connect(stack.ws_url(format=fmt)) as fresh:
        expected = await receive(fresh)
    assert expected["seq"] == seq
    assert state == expected["data"]


async def test_channels_parameter_and_narrowing(stack: Stack) -> None:
    tick(stack, "BTCUSDT", 1.0)
    tick(stack, "ETHUSDT", 1.0)
    wait_quiet(stack, quiet_s=0.4)
    async with connect(stack.ws_url(channels="market_data:BTCUSDT,account")) as ws:
        snapshot = await receive(ws)
        assert set(snapshot["data"]) == {"market_data", "account"}
        assert set(snapshot["data"]["market_data"]) == {"BTCUSDT"}
        tick(stack, "ETHUSDT", 2.0)
        tick(stack, "BTCUSDT", 2.0)
        frame = await receive(ws)
        assert frame["type"] == "update"
        assert frame["changes"]["market_data.BTCUSDT.last_price"] == 2.0
        assert all(path.startswith("market_data.BTCUSDT.") for path in frame["changes"])
        # applying it is exact from the client's own position (contract 4.1)
        assert frame["base_seq"] <= snapshot["seq"] < frame["seq"]
        assert frame["epoch"] == snapshot["epoch"]


async def test_subscribe_unsubscribe_and_refresh_answer_with_snapshots(stack: Stack) -> None:
    async with connect(stack.ws_url(channels="orders")) as ws:
        first = await receive(ws)
        assert set(first["data"]) == {"orders"}
        await ws.send(
            orjson.dumps({"type": "subscribe", "channels": ["positions", "account"]}).decode()
        )
        second = await receive(ws)
        assert second["type"] == "snapshot"
        assert set(second["data"]) == {"orders", "positions", "account"}
        await ws.send('{"type":"unsubscribe","channels":["orders","account"]}')
        third = await receive(ws)
        assert set(third["data"]) == {"positions"}
        await ws.send('{"type":"refresh"}')
        fourth = await receive(ws)
        assert fourth["type"] == "snapshot"
        assert fourth["seq"] >= third["seq"]
        await ws.send('{"type":"ping"}')
        assert await receive(ws) == {"type": "pong"}


BAD_MESSAGES = [
    ("not json at all", "bad_json"),
    ("{", "bad_json"),
    ("[]", "bad_message"),
    ('"subscribe"', "bad_message"),
    ('{"type":"dance"}', "bad_message"),
    ('{"type":7}', "bad_message"),
    ('{"type":"subscribe"}', "bad_message"),
    ('{"type":"subscribe","channels":"orders"}', "bad_message"),
    ('{"type":"subscribe","channels":[1,2]}', "bad_message"),
    ('{"type":"subscribe","channels":["candles"]}', "unknown_channel"),
    ('{"type":"subscribe","channels":["market_data:../../x"]}', "unknown_channel"),
    ('{"type":"subscribe","channels":["account:main"]}', "unknown_channel"),
    ('{"type":"unsubscribe","channels":["nope"]}', "unknown_channel"),
]


async def test_every_bad_message_gets_an_error_and_the_connection_carries_on(
    stack: Stack,
) -> None:
    async with connect(stack.ws_url(channels="account")) as ws:
        await receive(ws)
        for text, code in BAD_MESSAGES:
            await ws.send(text)
            frame = await receive(ws)
            assert frame["type"] == "error", text
            assert frame["code"] == code, (text, frame)
            assert frame["message"]
        await ws.send(b'{"type":"ping"}')  # JSON in a binary frame is accepted too
        assert await receive(ws) == {"type": "pong"}


async def test_a_message_over_4_kib_closes_with_1009(stack: Stack) -> None:
    async with connect(stack.ws_url(channels="account")) as ws:
        await receive(ws)
        await ws.send('{"type":"ping","pad":"' + "x" * 5000 + '"}')
        error = await receive(ws)
        assert error["code"] == "too_large"
        await ws.wait_closed()
        assert ws.close_code == 1009


@pytest.mark.parametrize(
    "query", ["type=desktop", "format=xml", "channels=market_data,candles", "channels=orders:a.b"]
)
async def test_bad_query_parameters_get_an_error_and_close_1008(stack: Stack, query: str) -> None:
    async with connect(stack.ws_url() + "&" + query) as ws:
        frame = await receive(ws)
        assert frame["type"] == "error"
        await ws.wait_closed()
        assert ws.close_code == 1008
