"""DeskClient against a small loopback WebSocket server that speaks crafted contract-4.1 frames.

The product's own resume (`/ws?since=&epoch=`) is issue 14 part 2; until it is in this branch the
resume path of the client is proven here against a server that answers as the contract says.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import msgpack
import pytest
from websockets.asyncio.server import ServerConnection, serve

from dashboard_client import DeskClient, DeskState, Outcome

pytestmark = pytest.mark.integration


class CraftedServer:
    """Serves `scripts[n]` to the n-th connection; records each request's query and headers."""

    def __init__(self, scripts: list[list[dict[str, Any] | str]]) -> None:
        self.scripts = scripts
        self.requests: list[tuple[dict[str, list[str]], str | None, float]] = []

    async def handler(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        query = parse_qs(urlsplit(ws.request.path).query)
        self.requests.append((query, ws.request.headers.get("Authorization"), time.monotonic()))
        script = self.scripts[min(len(self.requests), len(self.scripts)) - 1]
        binary = query.get("format") == ["msgpack"]
        for step in script:
            if step == "close1001":
                await ws.close(1001, "going away")
                return
            frame = msgpack.packb(step) if binary else json.dumps(step)
            await ws.send(frame)
        await ws.wait_closed()


async def until(client: DeskClient, predicate: Any, timeout: float = 5) -> DeskState:  # noqa: ASYNC109
    async with asyncio.timeout(timeout):
        async for state in client.states():
            if predicate(state):
                return state
    raise AssertionError("unreachable")


STATUS = {
    "type": "status",
    "seq": 5,
    "epoch": "e1",
    "worker": {"up": True, "heartbeat_age_s": 0.1},
    "backends": {"order_service": True},
    "ingest_lag_s": 0.01,
}


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
async def test_shutdown_reconnects_at_once_and_resumes(fmt: str) -> None:
    # given a server that sends a state, an update and then goes away with a shutdown frame
    first: list[dict[str, Any] | str] = [
        {
            "type": "snapshot",
            "seq": 5,
            "epoch": "e1",
            "timestamp": "t",
            "data": {"market_data": {"A": {"symbol": "A", "last_price": 1.0}}},
        },
        STATUS,
        {
            "type": "update",
            "seq": 6,
            "base_seq": 5,
            "epoch": "e1",
            "timestamp": "t",
            "changes": {"market_data.A.last_price": 2.0},
        },
        {"type": "shutdown", "reconnect_after_ms": 300},
        "close1001",
    ]
    # and, on the next connection, recovers the client from its seq
    second: list[dict[str, Any] | str] = [
        {"type": "recovered", "since": 6, "seq": 8, "epoch": "e1"},
        {
            "type": "update",
            "seq": 7,
            "base_seq": 6,
            "epoch": "e1",
            "timestamp": "t",
            "changes": {"market_data.B": {"symbol": "B", "last_price": 9.0}},
        },
        {
            "type": "update",
            "seq": 8,
            "base_seq": 7,
            "epoch": "e1",
            "timestamp": "t",
            "changes": {"market_data.A": None},
        },
        {**STATUS, "seq": 8, "worker": {"up": False, "heartbeat_age_s": None}},
    ]
    server = CraftedServer([first, second])
    async with serve(server.handler, "127.0.0.1", 0) as ws_server:
        port = ws_server.sockets[0].getsockname()[1]
        client = DeskClient(
            f"ws://127.0.0.1:{port}/ws",
            token="dsk_x",
            client_type="tui",
            fmt=fmt,  # type: ignore[arg-type]
            channels=["market_data", "positions:ETHUSDT"],
            reconnect_max_s=30,
        )
        async with client:
            live = await until(client, lambda s: s.seq == 6)
            assert live.outcome is Outcome.LIVE
            assert live.feed is not None
            assert live.feed.problems == []
            # when the server goes away, then the client reconnects after the delay it was
            # given (not a backoff), asking to resume from seq 6 of epoch e1
            state = await until(client, lambda s: s.seq == 8 and s.feed and s.feed.problems)
    assert state.outcome is Outcome.RECOVERED
    assert state.data == {"market_data": {"B": {"symbol": "B", "last_price": 9.0}}}
    assert state.feed is not None
    assert state.feed.problems == ["worker down: no updates are coming"]
    (q1, auth1, at1), (q2, auth2, at2) = server.requests[:2]
    assert auth1 == auth2 == "Bearer dsk_x"
    assert q1 == {"type": ["tui"], "format": [fmt], "channels": ["market_data,positions:ETHUSDT"]}
    assert q2 == {**q1, "since": ["6"], "epoch": ["e1"]}
    assert 0.3 <= at2 - at1 < 1.5
    # and the state the earlier iteration yielded was left as it was
    assert live.data == {"market_data": {"A": {"symbol": "A", "last_price": 2.0}}}


async def test_a_refused_resume_resyncs_and_a_gap_asks_for_a_refresh() -> None:
    received: list[Any] = []

    class Refreshing(CraftedServer):
        async def handler(self, ws: ServerConnection) -> None:
            if len(self.requests) == 0:
                await super().handler(ws)
                return
            self.requests.append((parse_qs(urlsplit(ws.request.path).query), None, 0.0))  # type: ignore[union-attr]
            await ws.send(
                json.dumps(
                    {
                        "type": "snapshot",
                        "seq": 50,
                        "epoch": "e2",
                        "timestamp": "t",
                        "data": {},
                        "recovered": False,
                        "reason": "epoch_changed",
                    }
                )
            )
            # an update that skips a seq the client never had
            await ws.send(
                json.dumps(
                    {
                        "type": "update",
                        "seq": 52,
                        "base_seq": 51,
                        "epoch": "e2",
                        "timestamp": "t",
                        "changes": {"x": 1},
                    }
                )
            )
            received.append(json.loads(await ws.recv()))
            await ws.send(
                json.dumps(
                    {
                        "type": "snapshot",
                        "seq": 52,
                        "epoch": "e2",
                        "timestamp": "t",
                        "data": {"x": 1},
                    }
                )
            )
            await ws.wait_closed()

    server = Refreshing(
        [[{"type": "snapshot", "seq": 5, "epoch": "e1", "timestamp": "t", "data": {}}, "close1001"]]
    )
    async with serve(server.handler, "127.0.0.1", 0) as ws_server:
        port = ws_server.sockets[0].getsockname()[1]
        async with DeskClient(f"ws://127.0.0.1:{port}/ws", reconnect_max_s=0.2) as client:
            state = await until(client, lambda s: s.seq == 52)
    assert received == [{"type": "refresh"}]
    assert state.outcome is Outcome.RESYNCED
    assert state.data == {"x": 1}
    assert state.gaps == 1
    assert server.requests[1][0]["since"] == ["5"]
