"""Per-connection bounds on `/ws`: subscriptions per socket, refresh floods (real processes)."""

from __future__ import annotations

import orjson
import pytest
from websockets.asyncio.client import ClientConnection

from bench.limits import refresh_flood
from support.processes import UNLIMITED_CLIENTS_ENV
from tests.e2e.stack import Stack, connect, receive, wait_quiet
from tests.e2e.test_websocket import tick

pytestmark = [pytest.mark.e2e]


async def types_until_quiet(ws: ClientConnection, *, quiet_s: float) -> list[str]:
    """The types of the frames that arrive until none has for `quiet_s`."""
    types = []
    while True:
        try:
            types.append((await receive(ws, timeout=quiet_s))["type"])
        except TimeoutError:
            return types


def subscribe(channels: list[str]) -> str:
    return orjson.dumps({"type": "subscribe", "channels": channels}).decode()


async def test_a_subscribe_past_the_cap_is_refused_and_changes_nothing(stack: Stack) -> None:
    # given a socket holding 1 + 900 subscriptions (the cap is 1,000 by default)
    async with connect(stack.ws_url(channels="account")) as ws:
        await receive(ws)
        for batch in range(5):  # 180 symbols a message keeps each under the 4 KiB limit
            symbols = [f"market_data:S{batch}{n:03d}" for n in range(180)]
            await ws.send(subscribe(symbols))
            assert (await receive(ws))["type"] == "snapshot"
        # when a subscribe would take it past the cap
        await ws.send(subscribe([f"positions:P{n:03d}" for n in range(180)]))
        # then it is refused with its own error code, and answered by no snapshot
        frame = await receive(ws)
        assert frame["type"] == "error"
        assert frame["code"] == "too_many_subscriptions"
        # and the subscription is what it was: one more within the cap still works
        await ws.send(subscribe(["strategies"]))
        frame = await receive(ws)
        assert frame["type"] == "snapshot"
        assert set(frame["data"]) == {"account", "market_data", "strategies"}
        # unsubscribing makes room again
        await ws.send('{"type":"unsubscribe","channels":["market_data"]}')
        assert set((await receive(ws))["data"]) == {"account", "strategies"}
        await ws.send(subscribe([f"positions:P{n:03d}" for n in range(180)]))
        assert set((await receive(ws))["data"]) == {"account", "strategies", "positions"}


async def test_refreshes_past_their_rate_are_merged_into_one(stack: Stack) -> None:
    # given a socket (refresh rate 1/s, burst 3 by default)
    async with connect(stack.ws_url(channels="market_data")) as ws:
        await receive(ws)
        # when it sends ten refreshes at once
        for _ in range(10):
            await ws.send('{"type":"refresh"}')
        # then the burst is answered at once, and the other seven by one snapshot, later
        frames = [await receive(ws) for _ in range(4)]
        assert [frame["type"] for frame in frames] == ["snapshot"] * 4
        assert "snapshot" not in await types_until_quiet(ws, quiet_s=1.5)


async def test_a_query_past_the_cap_is_refused(fresh_stack: Stack) -> None:
    stack = fresh_stack
    stack.start_worker()
    port = stack.start_web(DASHBOARD_WS_MAX_SUBSCRIPTIONS="5")
    channels = ",".join(f"market_data:S{n}" for n in range(6))
    async with connect(stack.ws_url(port, channels=channels)) as ws:
        frame = await receive(ws)
        assert frame["code"] == "too_many_subscriptions"
        await ws.wait_closed()
        assert ws.close_code == 1008


@pytest.mark.slow
async def test_non_reading_sockets_flooding_refresh_cost_bounded_memory(fresh_stack: Stack) -> None:
    # given a web process (limits per address lifted: the 200 sockets share one) and a state
    # whose market data weighs ~25 KiB
    stack = fresh_stack
    stack.start_worker()
    port = stack.start_web(**UNLIMITED_CLIENTS_ENV)
    web = stack.processes[-1]
    pad = "p" * 1024
    for n in range(20):
        stack.publish(
            "market_data", f"FL{n:02d}", {"symbol": f"FL{n:02d}", "last_price": 1.0, "pad": pad}
        )
    tick(stack, "LATUSDT", 0.5)
    wait_quiet(stack)

    # when 200 sockets that never read send refresh 8 times a second each, on a narrowed view
    figures = await refresh_flood(
        flood_url=stack.ws_url(port, channels="market_data"),
        polite_url=stack.ws_url(port, type="tui", channels="market_data:LATUSDT"),
        publish_tick=lambda price: tick(stack, "LATUSDT", price),
        web_pid=web.pid,
        sockets=200,
        per_s=8.0,
        seconds=15.0,
        abort_growth_mib=200,
    )
    print(figures)
    # then what the web process holds for them stays bounded: its RSS, and the unsent bytes the
    # kernel buffers for its sockets (before the bounds, these grew ~30 MB/s and kept growing)
    assert figures["rss_growth_mib"] < 100, figures
    assert figures["held_growth_mib"] < 200, figures
    # and the polite client kept receiving its updates, each well within a second or two
    assert figures["polite_missed"] == 0, figures
    assert figures["polite_updates"] >= 20, figures
    assert figures["polite_latency_p99_ms"] < 2000, figures
    assert web.alive()
