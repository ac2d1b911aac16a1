"""Conflation against real processes: a web process that falls behind merges frames.

Two web processes follow one worker. One is stopped (SIGSTOP) while the worker sends several
updates, then continued: it finds them all waiting and, being behind, sends its client fewer,
merged frames (realtime/conflation.py), where the other, never behind, sends each. The merged
frames' `base_seq` chain is continuous for a client checking it (contract 4.1), and both
clients end exactly at a fresh snapshot's state.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator

import pytest

from tests.e2e.stack import (
    CarefulClient,
    Stack,
    connect,
    receive,
    tick,
    wait_quiet,
    worker_and_webs,
)

pytestmark = [pytest.mark.e2e]

TICKS = 6
SPACING_S = 0.4  # above the web cadence (250 ms): each tick is a worker frame of its own


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A worker and two uvicorn web processes."""
    yield from worker_and_webs(tmp_path_factory.mktemp("conflation"), "web-behind", "web-current")


async def test_a_web_process_behind_sends_merged_frames_that_chain_exactly(stack: Stack) -> None:
    # given a client on each web process, both current
    behind_port, current_port = stack.web_ports
    behind_process = next(p for p in stack.processes if "web-behind" in str(p.log_path))
    tick(stack, "BTCUSDT", 1.0)
    start = wait_quiet(stack, quiet_s=0.4)
    async with (
        connect(stack.ws_url(behind_port, type="web")) as behind_ws,
        connect(stack.ws_url(current_port, type="web")) as current_ws,
    ):
        behind, current = (
            CarefulClient(await receive(behind_ws)),
            CarefulClient(await receive(current_ws)),
        )
        await behind.follow(behind_ws, start)
        await current.follow(current_ws, start)
        behind.frames.clear()
        current.frames.clear()
        # when one web process is stopped while the worker sends several updates, then goes on
        os.kill(behind_process.pid, signal.SIGSTOP)
        try:
            for i in range(TICKS):
                tick(stack, "BTCUSDT", 2.0 + i)  # a path each update overwrites
                tick(stack, f"NEW{i}", float(i))  # an entity each update adds
                await asyncio.sleep(SPACING_S)
            target = wait_quiet(stack, quiet_s=0.4)
        finally:
            os.kill(behind_process.pid, signal.SIGCONT)
        await current.follow(current_ws, target)
        await behind.follow(behind_ws, target)
        # then the current process sent each worker frame, the one behind fewer, merged ones
        assert len(current.frames) >= TICKS // 2, current.frames  # the worker may merge two
        assert len(behind.frames) < len(current.frames), (behind.frames, current.frames)
        assert any(
            sum(base <= b and s <= seq for b, s in current.frames) >= 2
            for base, seq in behind.frames
        ), (behind.frames, current.frames)
        # and both clients hold exactly a fresh client's state
        async with connect(stack.ws_url(behind_port, type="web")) as fresh_ws:
            fresh = await receive(fresh_ws)
        assert fresh["seq"] == behind.seq == current.seq == target
        assert behind.data == fresh["data"] == current.data
        # and the process carries on with single frames once it has caught up
        tick(stack, "LIVEUSDT", time.time())
        behind.apply(await receive(behind_ws))
        assert "LIVEUSDT" in behind.data["market_data"]
