"""Slow clients, lost messages, several web processes, kicks and shutdown — real processes."""

from __future__ import annotations

import asyncio
import copy
import random
import signal
import socket
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from realtime.presence import list_clients
from shared.core.changes import apply_changes
from support.processes import wait_until
from tests.e2e.stack import Stack, connect, receive, wait_quiet
from tests.e2e.test_websocket import random_burst, tick

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def converge(ws: Any, state: dict[str, Any], seq: int, target: int) -> tuple[Any, int, int]:
    """Read frames until `target`: apply updates, take snapshots whole. Returns snapshots seen."""
    snapshots = 0
    while seq < target:
        frame = await receive(ws, timeout=10)
        if frame["type"] == "snapshot":
            snapshots += 1
            state = copy.deepcopy(frame["data"])
        else:
            assert frame["type"] == "update", frame
            apply_changes(state, frame["changes"])
        assert frame["seq"] >= seq  # never backwards
        seq = frame["seq"]
    return state, seq, snapshots


def resyncs_counted(port: int) -> float:
    """dashboard_resyncs_total of one web process, from its /metrics."""
    from urllib.request import urlopen

    from prometheus_client.parser import text_string_to_metric_families

    with urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    for family in text_string_to_metric_families(text):
        if family.name == "dashboard_resyncs":
            return sum(sample.value for sample in family.samples if sample.name.endswith("_total"))
    raise AssertionError("dashboard_resyncs missing")


async def kill_group_subscribers(client: aioredis.Redis, prefix: str) -> int:
    """Disconnect the stack's channel-layer subscribers, found by their connection names.

    Only the stack's own: every test run and helper on the machine shares this Redis.
    """
    killed = 0
    for entry in await client.client_list(_type="pubsub"):
        if entry.get("name", "").startswith(f"{prefix}:layer:") and int(entry.get("sub", 0)) > 0:
            await client.client_kill_filter(_id=entry["id"])
            killed += 1
    return killed


async def fresh_snapshot(stack: Stack, port: int | None = None) -> dict[str, Any]:
    async with connect(stack.ws_url(port)) as ws:
        return await receive(ws)


async def test_lost_group_messages_turn_into_one_resync(fresh_stack: Stack) -> None:
    # given a client following updates
    stack = fresh_stack
    stack.start_worker()
    stack.start_web()
    async with connect(stack.ws_url(type="tui")) as ws:
        snapshot = await receive(ws)
        state, seq = copy.deepcopy(snapshot["data"]), snapshot["seq"]
        rng = random.Random(4)
        # when Redis drops the web process's channel-layer subscription again and again while
        # changes flow (the worker keeps broadcasting), so that group messages are lost
        client = aioredis.Redis.from_url(stack.redis_url)
        kills = 0
        try:
            for _ in range(15):
                random_burst(stack, rng, 30)
                kills += await kill_group_subscribers(client, stack.prefix)
                await asyncio.sleep(0.12)
        finally:
            await client.aclose()
        assert kills >= 2

        # then the client is brought back by a snapshot and ends equal to a fresh client
        def settled_after_changes() -> bool:  # publish until the worker hears again
            tick(stack, "AFTERUSDT", rng.random())
            return stack.seq() > seq + 50

        wait_until(settled_after_changes, timeout=20, what="ticks after the cut")
        target = wait_quiet(stack)
        state, seq, snapshots = await converge(ws, state, seq, target)
    expected = await fresh_snapshot(stack)
    assert expected["seq"] == seq
    assert state == expected["data"]
    assert snapshots >= 1  # the lost messages were noticed, not silently skipped


async def test_slow_client_is_bounded_and_resynced_when_it_reads_again(fresh_stack: Stack) -> None:
    # given a web process with a small per-client buffer, and a client that stops reading
    stack = fresh_stack
    stack.env["DASHBOARD_WS_SEND_BUFFER_MESSAGES"] = "8"
    # The resume rings (contract 4.1) keep recent updates on purpose, bounded by their own
    # settings; kept tiny here so that the memory measured is what the slow client costs.
    stack.env["DASHBOARD_RESUME_MAX_BYTES"] = "4096"
    stack.start_worker()
    port = stack.start_web()
    web = stack.processes[-1]
    pad = "x" * 16_000  # big updates fill the socket buffers quickly
    # A small receive buffer and a one-frame queue: once it stops reading, the server's
    # socket backs up after a few frames, as with a client on a bad link.
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
    sock.connect(("127.0.0.1", port))
    async with connect(stack.ws_url(type="tui"), sock=sock, max_queue=1) as slow:
        first = await receive(slow)
        state, seq = copy.deepcopy(first["data"]), first["seq"]
        # when much more than the buffers hold is sent while it does not read
        rss_before = rss_kib(web.pid)
        rss_peak = rss_before
        for wave in range(60):
            for i in range(20):
                stack.publish(
                    "market_data",
                    f"P{i}",
                    {"symbol": f"P{i}", "last_price": wave, "pad": pad + str(wave)},
                )
            await asyncio.sleep(0.1)
            rss_peak = max(rss_peak, rss_kib(web.pid))
        # then the server did not buffer it all: ~24 MB were sent while memory stayed flat
        growth_mib = (rss_peak - rss_before) / 1024
        print(f"web RSS {rss_before / 1024:.1f} MiB, peak growth {growth_mib:.1f} MiB")
        assert growth_mib < 12
        # and once the client reads again it gets one fresh snapshot and follows exactly
        target = wait_quiet(stack)
        state, seq, snapshots = await converge(slow, state, seq, target)
        assert snapshots >= 1
    # while it was stalled, updates were dropped, not turned into snapshot after snapshot
    assert resyncs_counted(port) <= 2
    expected = await fresh_snapshot(stack, port)
    assert (expected["seq"], expected["data"]) == (seq, state)


async def test_two_web_processes_serve_the_same_stream(fresh_stack: Stack) -> None:
    stack = fresh_stack
    stack.start_worker()
    first_port = stack.start_web("web-1")
    second_port = stack.start_web("web-2", server="daphne")
    async with connect(stack.ws_url(first_port)) as a, connect(stack.ws_url(second_port)) as b:
        snap_a, snap_b = await receive(a), await receive(b)
        rng = random.Random(9)
        for _ in range(6):  # waves longer than the 250 ms cadence: several updates
            random_burst(stack, rng, 25)
            await asyncio.sleep(0.3)
        target = wait_quiet(stack)
        seen: list[dict[int, Any]] = [{}, {}]
        finals = []
        for ws, snap, log in ((a, snap_a, seen[0]), (b, snap_b, seen[1])):
            state, seq = copy.deepcopy(snap["data"]), snap["seq"]
            while seq < target:
                frame = await receive(ws)
                log[frame["seq"]] = frame["changes"]
                apply_changes(state, frame["changes"])
                seq = frame["seq"]
            finals.append((seq, state))
    common = sorted(set(seen[0]) & set(seen[1]))
    assert len(common) > 2, (sorted(seen[0]), sorted(seen[1]))
    for seq in common:
        assert seen[0][seq] == seen[1][seq]
    expected = await fresh_snapshot(stack, first_port)
    assert finals == [(expected["seq"], expected["data"])] * 2


async def test_presence_lists_clients_of_every_process_and_kick_closes_4000(
    fresh_stack: Stack,
) -> None:
    stack = fresh_stack
    stack.start_worker()
    first_port = stack.start_web("web-1")
    second_port = stack.start_web("web-2")
    redis = aioredis.Redis.from_url(stack.redis_url)
    try:
        async with (
            connect(stack.ws_url(first_port, type="tui", format="msgpack")) as a,
            connect(stack.ws_url(second_port, channels="market_data:BTCUSDT")) as b,
        ):
            await receive(a)
            await receive(b)

            async def both_listed() -> list[dict[str, Any]]:
                clients = await list_clients(redis, prefix=stack.prefix)
                return clients if len(clients) == 2 else []

            clients: list[dict[str, Any]] = []
            for _ in range(100):
                clients = await both_listed()
                if clients:
                    break
                await asyncio.sleep(0.1)
            assert len(clients) == 2
            by_type = {c["type"]: c for c in clients}
            assert by_type["tui"]["format"] == "msgpack"
            assert by_type["web"]["subscriptions"] == ["market_data:BTCUSDT"]
            assert by_type["web"]["remote_addr"] == "127.0.0.1"
            assert by_type["web"]["process"] != by_type["tui"]["process"]
            # when an admin kicks the web client, whichever process holds it closes it
            from channels_redis.pubsub import RedisPubSubChannelLayer

            from realtime.hub import kick_client

            layer = RedisPubSubChannelLayer(hosts=[stack.redis_url], prefix=f"{stack.prefix}.asgi")
            try:
                await kick_client(layer, prefix=stack.prefix, client_id=by_type["web"]["id"])
            finally:
                await layer.flush()
            await asyncio.wait_for(b.wait_closed(), 5)
            assert b.close_code == 4000
            assert a.close_code is None
    finally:
        await redis.aclose()


async def test_sigterm_closes_sockets_with_1001(fresh_stack: Stack) -> None:
    stack = fresh_stack
    stack.start_worker()
    stack.start_web()
    web = stack.processes[-1]
    async with connect(stack.ws_url()) as ws:
        await receive(ws)
        code = web.terminate(timeout=15)
        await asyncio.wait_for(ws.wait_closed(), 10)
        assert ws.close_code == 1001
    # uvicorn re-raises the SIGTERM it handled once its graceful shutdown is done.
    assert code in (0, -signal.SIGTERM), web.output()[-2000:]
    assert "Finished server process" in web.output()


async def test_server_pings_and_drops_a_silent_peer(fresh_stack: Stack) -> None:
    # given pings every second and a 2 s idle limit
    stack = fresh_stack
    stack.env["DASHBOARD_WS_PING_INTERVAL_S"] = "1"
    stack.env["DASHBOARD_WS_IDLE_TIMEOUT_S"] = "2"
    stack.start_worker()
    port = stack.start_web()
    # when one peer completes the handshake and then never answers anything, and another
    # (a real client library) answers pings as browsers do
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            f"GET /ws?token={stack.token} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n".encode()
            + b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101")
        async with connect(stack.ws_url(channels="account")) as polite:
            await receive(polite)
            started = asyncio.get_running_loop().time()
            # then the silent peer is disconnected by the server within a few seconds
            received = b""
            while chunk := await asyncio.wait_for(reader.read(65536), timeout=10):
                received += chunk  # pings and the snapshot arrive; the peer never replies
            assert b'"type":"snapshot"' in received  # admitted: it is the silence that ends it
            dropped_after = asyncio.get_running_loop().time() - started
            assert dropped_after < 8
            # while the polite client is still served
            await polite.send('{"type":"ping"}')
            assert await receive(polite) == {"type": "pong"}
    finally:  # closed however the test ends: no socket left for the GC to warn about
        writer.close()
        await writer.wait_closed()
