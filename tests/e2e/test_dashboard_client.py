"""dashboard_client against the real server: it keeps the server's state, and its example runs."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from dashboard_client import DeskClient, Outcome
from support.processes import ROOT, wait_until
from tests.e2e.stack import Stack, connect, receive, wait_quiet

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
async def test_the_client_holds_exactly_the_servers_state(fresh_stack: Stack, fmt: str) -> None:
    # given the demo desk trading
    stack = fresh_stack
    stack.start_worker()
    port = stack.start_web()
    simulator = stack.start_simulator()
    async with DeskClient(
        stack.ws_url(port, auth=False), token=stack.token, fmt=fmt, client_type="tui"
    ) as desk:
        async with asyncio.timeout(20):
            async for state in desk.states():
                if state.updates >= 20 and state.feed is not None:
                    break
        assert state.outcome is Outcome.LIVE
        assert state.feed is not None
        assert state.feed.worker_up
        # when the desk stops, then what the client built from updates is the server's snapshot
        simulator.terminate()
        seq = await asyncio.to_thread(wait_quiet, stack)
        async with asyncio.timeout(10):
            async for state in desk.states():
                if state.seq >= seq:
                    break
        async with connect(stack.ws_url(port)) as ws:
            fresh = await receive(ws)
        assert (state.seq, state.data) == (fresh["seq"], fresh["data"])
        assert state.gaps == 0


def test_the_command_line_example_prints_prices(fresh_stack: Stack) -> None:
    stack = fresh_stack
    stack.start_worker()
    port = stack.start_web()
    stack.start_simulator()
    log = stack.log_dir / "follow.log"
    with log.open("wb") as out:
        example = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dashboard_client",
                f"ws://127.0.0.1:{port}/ws",
                "--symbols",
                "BTCUSDT,ETHUSDT",
            ],
            cwd=ROOT,
            env={"PATH": "/usr/bin:/bin", "DASHBOARD_TOKEN": stack.token},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_until(
                lambda: log.read_text().count("BTCUSDT") >= 3, timeout=30, what="price lines"
            )
        finally:
            example.terminate()
            example.wait(timeout=10)
    lines = log.read_text().splitlines()
    prices = [line for line in lines if line.startswith("seq ")]
    assert prices[0].split()[2] == "[live]"
    assert "BTCUSDT" in prices[-1]
    assert "ETHUSDT" in prices[-1]
    assert "SOLUSDT" not in prices[-1]  # only the symbols asked for
