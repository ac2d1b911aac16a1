"""One bad record must never stop the pipeline: the real worker and web processes (issue 13)."""

from __future__ import annotations

import asyncio
import time

import pytest
from websockets.asyncio.client import ClientConnection

from support.processes import wait_until
from tests.e2e.stack import Stack, connect, receive
from tests.e2e.test_websocket import tick

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

# The probe of issue 13: an integer past 64 bits, which msgspec keeps and orjson cannot encode.
POISON = b'{"symbol":"ZZ","last_price":1,"venue_seq":100000000000000000000}'


async def ticks_arrive(stack: Stack, ws: ClientConnection, symbol: str, *, timeout: float) -> None:  # noqa: ASYNC109
    """Publish ticks of `symbol` until an update carrying one reaches `ws`; fail at `timeout`."""
    deadline = time.monotonic() + timeout
    price = 0.0
    while time.monotonic() < deadline:
        price += 1
        tick(stack, symbol, price)
        try:
            frame = await receive(ws, timeout=0.5)
        except TimeoutError:
            continue
        changes = frame.get("changes") or {}
        if frame["type"] == "update" and any(
            p.startswith(f"market_data.{symbol}") for p in changes
        ):
            return
    raise AssertionError(f"no update of {symbol} within {timeout} s")


async def test_an_unencodable_cache_key_is_refused_and_updates_keep_flowing(
    fresh_stack: Stack,
) -> None:
    # given a client following updates
    stack = fresh_stack
    worker = stack.start_worker()
    stack.start_web()
    async with connect(stack.ws_url()) as ws:
        assert (await receive(ws))["type"] == "snapshot"
        await ticks_arrive(stack, ws, "BEFOREUSDT", timeout=15)
        # when a cache key holds a number no encoder on the path can carry, and an orderbook
        # event makes the worker reload it
        stack.redis.set(f"{stack.input_prefix}market_data:ZZ", POISON)
        stack.redis.publish(f"{stack.input_prefix}orderbook:ZZ", b"{}")
        # then fresh ticks still reach the client
        await ticks_arrive(stack, ws, "AFTERUSDT", timeout=15)
    # and the record was refused with its reason, counted in the worker's stats line
    counted = "cache:unrepresentable_number"
    await asyncio.to_thread(
        wait_until, lambda: counted in worker.output(), timeout=10, what="the rejection counted"
    )
    # and a restarted worker, which reads every cache key at start, still broadcasts
    worker.terminate()
    stack.start_worker("worker-restarted")
    async with connect(stack.ws_url()) as ws:
        snapshot = await receive(ws)
        assert "ZZ" not in snapshot["data"]["market_data"]
        await ticks_arrive(stack, ws, "RESTARTUSDT", timeout=15)


async def test_a_look_alike_symbol_with_a_trailing_newline_never_reaches_a_client(
    fresh_stack: Stack,
) -> None:
    # given a client following updates
    stack = fresh_stack
    stack.start_worker()
    stack.start_web()
    async with connect(stack.ws_url()) as ws:
        assert (await receive(ws))["type"] == "snapshot"
        # when a producer sends "BTCUSDT\n" (`$` would match before the newline)
        stack.publish("market_data", "BTCUSDT", {"symbol": "BTCUSDT\n", "last_price": 666.0})
        await ticks_arrive(stack, ws, "BTCUSDT", timeout=15)
    # then only the real BTCUSDT exists, in the state every new client gets
    async with connect(stack.ws_url()) as ws:
        symbols = set((await receive(ws))["data"]["market_data"])
    assert symbols == {"BTCUSDT"}
