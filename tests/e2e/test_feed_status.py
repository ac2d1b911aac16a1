"""The status and shutdown frames (contract 4.1) from the real worker and web processes."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from shared.clock import rfc3339_now
from tests.e2e.stack import Stack, connect, receive

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

BACKENDS = {"order_service", "account_service", "strategy_service"}


async def next_status(ws: ClientConnection, timeout: float) -> tuple[dict[str, Any], float]:  # noqa: ASYNC109
    """The next status frame (other frames skipped) and how long it took to come."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    deadline = started + timeout
    while True:
        frame = await receive(ws, timeout=max(0.01, deadline - loop.time()), status=True)
        if frame["type"] == "status":
            return frame, loop.time() - started


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
async def test_status_on_connect_then_every_five_seconds(fresh_stack: Stack, fmt: str) -> None:
    # given a worker whose backends are not there (nothing listens on their ports)
    stack = fresh_stack
    stack.start_worker()
    stack.start_web()
    async with connect(stack.ws_url(format=fmt)) as ws:
        # when a client connects, then its snapshot comes first and the status right after it
        snapshot = await receive(ws)
        assert snapshot["type"] == "snapshot"
        status = await receive(ws, status=True)
        assert status["type"] == "status"
        assert status["worker"]["up"] is True
        assert 0 <= status["worker"]["heartbeat_age_s"] < 3
        assert status["backends"].keys() == BACKENDS
        assert status["seq"] >= snapshot["seq"]
        assert "epoch" in status
        assert "ingest_lag_s" in status
        # and another one within 5 s (plus the hub's 1 s reading), with nothing changing
        _, waited = await next_status(ws, timeout=8)
        assert waited <= 6.5


async def test_status_says_the_worker_died_and_came_back(fresh_stack: Stack) -> None:
    # given a client following a web process and its only worker
    stack = fresh_stack
    worker = stack.start_worker()
    stack.start_web()
    async with connect(stack.ws_url()) as ws:
        assert (await receive(ws))["type"] == "snapshot"
        assert (await next_status(ws, timeout=5))[0]["worker"]["up"] is True
        # when the worker is killed outright
        worker.kill()
        killed = asyncio.get_running_loop().time()
        # then a status says so as soon as its heartbeat has expired (a lease, 3 s), not at the
        # next periodic frame: within the lease plus one reading
        while True:
            status, _ = await next_status(ws, timeout=8)
            if not status["worker"]["up"]:
                break
            assert status["worker"]["heartbeat_age_s"] < 5
        assert asyncio.get_running_loop().time() - killed < 3.0 + 1.0 + 0.5
        assert status["worker"]["heartbeat_age_s"] is None
        # when a worker starts again (started from a thread: the socket keeps being read)
        await asyncio.to_thread(stack.start_worker, "worker-2")
        leading = asyncio.get_running_loop().time()
        # then a status says it is up within its first heartbeat (a renewal, 1 s) and a reading
        while not status["worker"]["up"]:
            status, _ = await next_status(ws, timeout=8)
        assert asyncio.get_running_loop().time() - leading < 1.0 + 1.0 + 0.5
        assert status["backends"].keys() == BACKENDS


async def test_lag_is_reported_from_timestamped_input(fresh_stack: Stack) -> None:
    # given a producer publishing timestamped ticks
    stack = fresh_stack
    stack.start_worker()
    stack.start_web()
    async with connect(stack.ws_url()) as ws:
        await receive(ws)
        lags: list[float | None] = []
        for i in range(40):
            stack.publish(
                "market_data",
                "LAGUSDT",
                {"symbol": "LAGUSDT", "last_price": 1.0 + i, "updated_at": rfc3339_now()},
            )
            await asyncio.sleep(0.25)  # a producer's pace, not a wait for the server
            while True:
                try:
                    frame = await receive(ws, timeout=0.01, status=True)
                except TimeoutError:
                    break
                if frame["type"] == "status":
                    lags.append(frame["ingest_lag_s"])
            if any(lag is not None for lag in lags):
                break
        # then a status carries the lag: small, on one machine
        measured = [lag for lag in lags if lag is not None]
        assert measured, lags
        assert 0 <= measured[0] < 1.0


async def test_sigterm_sends_shutdown_then_1001(fresh_stack: Stack) -> None:
    stack = fresh_stack
    stack.start_worker()
    stack.start_web(DASHBOARD_WS_SHUTDOWN_RECONNECT_SPREAD_MS="500")
    web = stack.processes[-1]
    async with connect(stack.ws_url()) as json_ws, connect(stack.ws_url(format="msgpack")) as mp:
        for ws in (json_ws, mp):
            await receive(ws)
        # when the web process is told to stop
        web.process.send_signal(signal.SIGTERM)
        # then each client's last frame is a shutdown, with a delay within the spread, then 1001
        for ws in (json_ws, mp):
            frames: list[dict[str, Any]] = []
            while True:
                try:
                    frames.append(await receive(ws, timeout=10, status=True))
                except websockets.ConnectionClosed:
                    break
            assert frames, "no frame before the close"
            assert frames[-1]["type"] == "shutdown", frames[-3:]
            assert 0 <= frames[-1]["reconnect_after_ms"] < 500
            await asyncio.wait_for(ws.wait_closed(), 10)
            assert ws.close_code == 1001
    assert web.terminate(timeout=15) in (0, -signal.SIGTERM), web.output()[-2000:]
