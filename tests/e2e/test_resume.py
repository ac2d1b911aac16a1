"""Resume after reconnect (`/ws?since=SEQ&epoch=E`, contract 4.1) against real processes.

A worker and two web processes: a client resumes on the process it left and on the other one;
a lost shared snapshot (a new lineage) and a ring too short for the gap give snapshots saying
why; every frame a client applies passes the client's own continuity check.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from support.processes import wait_until
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


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A worker and two uvicorn web processes, A and B (`stack.web_ports`)."""
    yield from worker_and_webs(tmp_path_factory.mktemp("resume"), "web-a", "web-b")


async def settled_client(stack: Stack, port: int, **query: str) -> tuple[CarefulClient, int]:
    """A client that followed the state until it settled; and the settled seq."""
    target = wait_quiet(stack, quiet_s=0.4)
    async with connect(stack.ws_url(port, **query)) as ws:
        client = CarefulClient(await receive(ws))
        await client.follow(ws, target)
    return client, target


async def fresh_snapshot(stack: Stack, port: int, **query: str) -> dict[str, Any]:
    async with connect(stack.ws_url(port, **query)) as ws:
        return await receive(ws)


async def resume_and_compare(stack: Stack, client: CarefulClient, port: int, **query: str) -> None:
    """Resume `client` on `port`: recovered, the missed updates, then exactly the state."""
    since = client.seq
    target = wait_quiet(stack, quiet_s=0.4)
    async with connect(stack.ws_url(port, **query, **client.query())) as ws:
        marker = await receive(ws)
        assert marker == {
            "type": "recovered",
            "since": since,
            "seq": marker["seq"],
            "epoch": client.epoch,
        }
        assert marker["seq"] >= since
        await client.follow(ws, marker["seq"])
        assert client.seq == marker["seq"]  # the replay ends exactly where the marker said
        await client.follow(ws, target)  # then live updates carry on
        # and the client's state is exactly a fresh client's
        expected = await fresh_snapshot(stack, port, **query)
        assert expected["seq"] == client.seq
        assert client.data == expected["data"]
        # and live updates carry on after it
        tick(stack, "LIVEUSDT", time.time())
        client.apply(await receive(ws))
        assert "LIVEUSDT" in client.data["market_data"]


@pytest.mark.parametrize("server", ["same", "other"])
async def test_a_client_resumes_with_the_updates_it_missed(stack: Stack, server: str) -> None:
    # given a client that followed the state on web process A, then disconnected
    port_a, port_b = stack.web_ports
    tick(stack, "BTCUSDT", 1.0)
    client, _ = await settled_client(stack, port_a)
    # when the state moves on over several ticks while it is away
    for i in range(6):
        tick(stack, "BTCUSDT", 2.0 + i)
        tick(stack, f"AWAY{i}", float(i))
        await asyncio.sleep(0.1)
    # then it resumes on A, or on B, with exactly what it missed
    await resume_and_compare(stack, client, port_a if server == "same" else port_b)


async def test_a_narrowed_client_resumes_with_its_symbols_only(stack: Stack) -> None:
    # given a client of BTCUSDT only that disconnected
    query = {"channels": "market_data:BTCUSDT", "type": "tui"}
    tick(stack, "BTCUSDT", 10.0)
    client, _ = await settled_client(stack, stack.web_ports[0], **query)
    # when BTCUSDT and other symbols tick while it is away
    for i in range(5):
        tick(stack, "ETHUSDT", 20.0 + i)
        tick(stack, "BTCUSDT", 11.0 + i)
        tick(stack, "ETHUSDT", 30.0 + i)
        await asyncio.sleep(0.15)
    target = wait_quiet(stack, quiet_s=0.4)
    # then it resumes on B with BTCUSDT's changes only, each applying to what it holds
    since = client.seq
    async with connect(stack.ws_url(stack.web_ports[1], **query, **client.query())) as ws:
        marker = await receive(ws)
        assert marker["type"] == "recovered"
        assert marker["since"] == since
        assert marker["seq"] >= target
        frames = 0
        while client.data["market_data"]["BTCUSDT"]["last_price"] != 15.0:
            frame = await receive(ws)
            assert all(path.startswith("market_data.BTCUSDT") for path in frame["changes"])
            client.apply(frame)
            frames += 1
        assert 1 <= frames <= 5
    expected = await fresh_snapshot(stack, stack.web_ports[1], **query)
    assert client.data == expected["data"]


async def test_a_current_client_resumes_with_nothing_to_replay(stack: Stack) -> None:
    # given a client at the settled seq
    client, target = await settled_client(stack, stack.web_ports[0], format="msgpack")
    assert client.seq == target
    # when it reconnects at once (nothing changed)
    async with connect(stack.ws_url(stack.web_ports[1], format="msgpack", **client.query())) as ws:
        # then it is recovered at its own seq, and the next frame is a live update
        assert await receive(ws) == {
            "type": "recovered",
            "since": target,
            "seq": target,
            "epoch": client.epoch,
        }
        tick(stack, "BTCUSDT", 99.0)
        client.apply(await receive(ws))
        assert client.data["market_data"]["BTCUSDT"]["last_price"] == 99.0


async def test_resumes_that_cannot_be_exact_get_a_snapshot_saying_why(stack: Stack) -> None:
    client, target = await settled_client(stack, stack.web_ports[0])
    cases = [
        ({"since": str(target + 1000), "epoch": client.epoch}, "unknown"),  # ahead of us
        ({"since": str(target), "epoch": "another-lineage"}, "epoch_changed"),
        ({"since": "0", "epoch": client.epoch}, "too_old"),  # before this process started
    ]
    for query, reason in cases:
        async with connect(stack.ws_url(**query)) as ws:
            frame = await receive(ws)
        assert frame["type"] == "snapshot", (query, frame)
        assert frame["recovered"] is False
        assert frame["reason"] == reason, query
        assert frame["seq"] == target
        assert frame["epoch"] == client.epoch


@pytest.mark.parametrize(
    "query",
    [
        {"since": "12"},  # without epoch
        {"epoch": "e1"},  # without since
        {"since": "-1", "epoch": "e1"},
        {"since": "abc", "epoch": "e1"},
        {"since": "9" * 40, "epoch": "e1"},
        {"since": "12", "epoch": "x" * 100},
    ],
)
async def test_a_malformed_resume_is_an_error_then_a_normal_snapshot(
    stack: Stack, query: dict[str, str]
) -> None:
    async with connect(stack.ws_url(**query)) as ws:
        error = await receive(ws)
        assert error["type"] == "error"
        assert error["code"] == "bad_message"
        snapshot = await receive(ws)
        assert snapshot["type"] == "snapshot"
        assert "recovered" not in snapshot
        await ws.send('{"type":"ping"}')  # the connection carries on
        assert await receive(ws) == {"type": "pong"}


async def test_a_resume_while_updates_flow_loses_and_repeats_nothing(stack: Stack) -> None:
    # given a client that left while a producer publishes every few milliseconds
    client, _ = await settled_client(stack, stack.web_ports[0], type="tui")
    stop = threading.Event()

    def produce() -> None:
        price = 0.0
        while not stop.is_set():
            price += 1.0
            tick(stack, "FLOWUSDT", price)
            time.sleep(0.003)

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    try:
        await asyncio.sleep(0.5)
        # when it resumes mid-flow, on the other process
        port = stack.web_ports[1]
        async with connect(stack.ws_url(port, type="tui", **client.query())) as ws:
            marker = await receive(ws)
            assert marker["type"] == "recovered", marker
            # then every frame applies to exactly what it holds (no gap, no repeat)
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline:
                client.apply(await receive(ws))
            stop.set()
            producer.join()
            target = wait_quiet(stack, quiet_s=0.4)
            await client.follow(ws, target)
        expected = await fresh_snapshot(stack, port, type="tui")
        assert expected["seq"] == client.seq
        assert client.data == expected["data"]
    finally:
        stop.set()
        producer.join()


def _shared_epoch(stack: Stack) -> str:
    raw = stack.redis.get(f"{stack.prefix}:state:epoch")
    return raw.decode() if raw else ""


@pytest.mark.slow
async def test_a_lost_shared_snapshot_starts_a_new_lineage(fresh_stack: Stack) -> None:
    # given a client that followed the state, then disconnected
    fresh_stack.start_worker()
    port = fresh_stack.start_web()
    tick(fresh_stack, "BTCUSDT", 1.0)
    client, _ = await settled_client(fresh_stack, port)
    # when Redis loses the shared snapshot (a restart without persistence) and the state moves
    keys = list(fresh_stack.redis.scan_iter(match=f"{fresh_stack.prefix}:state:*"))
    assert keys
    fresh_stack.redis.delete(*keys)
    tick(fresh_stack, "BTCUSDT", 2.0)
    wait_until(
        lambda: _shared_epoch(fresh_stack) not in ("", client.epoch),
        timeout=10,
        what="a new lineage",
    )
    lineage = _shared_epoch(fresh_stack)
    # (the web process has heard of it: a live client resyncs into it)
    async with connect(fresh_stack.ws_url(port)) as watcher:
        frame = await receive(watcher)
        while frame.get("epoch") != lineage:
            tick(fresh_stack, "BTCUSDT", time.time())
            frame = await receive(watcher)
    # then its resume is refused as epoch_changed, with a snapshot of the new lineage
    async with connect(fresh_stack.ws_url(port, **client.query())) as ws:
        frame = await receive(ws)
    assert frame["type"] == "snapshot"
    assert frame["recovered"] is False
    assert frame["reason"] == "epoch_changed"
    assert frame["epoch"] == lineage
    assert frame["data"]["market_data"]["BTCUSDT"]["last_price"] != 1.0


@pytest.mark.slow
async def test_a_gap_longer_than_the_ring_is_too_old(fresh_stack: Stack) -> None:
    # given a web process that keeps half a second of updates, and a client that left
    fresh_stack.start_worker()
    port = fresh_stack.start_web(DASHBOARD_RESUME_SPAN_S="0.5")
    tick(fresh_stack, "BTCUSDT", 1.0)
    client, _ = await settled_client(fresh_stack, port)
    # when the state moved on and then stayed quiet past the span
    tick(fresh_stack, "BTCUSDT", 2.0)
    wait_quiet(fresh_stack, quiet_s=0.8)
    # then the resume is refused as too old, with a fresh snapshot
    async with connect(fresh_stack.ws_url(port, **client.query())) as ws:
        frame = await receive(ws)
    assert frame["type"] == "snapshot"
    assert frame["recovered"] is False
    assert frame["reason"] == "too_old"
    assert frame["data"]["market_data"]["BTCUSDT"]["last_price"] == 2.0
