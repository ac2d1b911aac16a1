"""Per-connection bounds on `/ws`: subscriptions per socket, refresh floods (real processes)."""

from __future__ import annotations

import orjson
import pytest

from tests.e2e.stack import Stack, connect, receive

pytestmark = [pytest.mark.e2e]


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
