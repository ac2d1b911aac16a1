"""The web process's hub keeps hearing updates however often Redis cuts its subscription."""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.error import HTTPError
from urllib.request import urlopen

import msgpack
import pytest
import redis
import redis.asyncio as aioredis
from websockets.asyncio.client import ClientConnection

from support.processes import ManagedProcess, wait_until
from tests.e2e.stack import Stack, connect, receive
from tests.e2e.test_websocket import tick
from tests.faults.test_faults import PrivateRedis

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

_WATCHDOG_WARNING = "hub heard no update while the state moved; resubscribing"


@pytest.fixture
def own_redis_stack(tmp_path: Path) -> Iterator[Stack]:
    """A deployment on a redis-server of its own: the test reconfigures it (maxclients)."""
    server = PrivateRedis(tmp_path)
    server.start()
    deployment = Stack(redis_url=server.url, log_dir=tmp_path)
    try:
        yield deployment
    finally:
        deployment.stop()
        server.stop()


async def layer_subscriber(client: aioredis.Redis, *, prefix: str, pid: int) -> str | None:
    """The id of one web process's channel-layer subscriber connection, found by its name."""
    name = f"{prefix}:layer:{pid}"
    for entry in await client.client_list(_type="pubsub"):
        if entry.get("name") == name and int(entry.get("sub", 0)) > 0:
            return str(entry["id"])
    return None


async def test_updates_resume_after_every_cut_of_the_hub_subscription(
    own_redis_stack: Stack,
) -> None:
    # given a web process whose hub follows the worker, and a client on the tui cadence
    stack = own_redis_stack
    stack.start_worker()
    stack.start_web()
    web = stack.processes[-1]
    client = aioredis.Redis.from_url(stack.redis_url)
    prices = itertools.count(1)
    try:
        async with connect(stack.ws_url(type="tui", channels="market_data:CUTUSDT")) as ws:
            await receive(ws)  # the snapshot
            for cut in range(20):
                found = await _wait_for_subscriber(client, stack, web, cut)
                # Every fifth cut, Redis also refuses new connections for a while (maxclients
                # reached): the process cannot reconnect by itself, its watchdog must act.
                refused = cut % 5 == 4
                if refused:
                    connected = int((await client.info("clients"))["connected_clients"])
                    await client.config_set("maxclients", connected - 1)
                    warned = web.output().count(_WATCHDOG_WARNING)
                # when Redis drops exactly that process's subscriber connection
                assert await client.client_kill_filter(_id=found) == 1
                if refused:
                    while web.output().count(_WATCHDOG_WARNING) == warned:
                        tick(stack, "CUTUSDT", float(next(prices)))  # the state moves on
                        await asyncio.sleep(0.1)
                    await client.config_set("maxclients", 10_000)
                # then updates, not only snapshots, reach the client again
                deadline = asyncio.get_running_loop().time() + 20
                while True:
                    price = float(next(prices))
                    tick(stack, "CUTUSDT", price)
                    if await _update_with(ws, price, within=0.5):
                        break
                    assert asyncio.get_running_loop().time() < deadline, (
                        f"cut {cut}: no update for 20 s\n" + web.output()[-3000:]
                    )
    finally:
        await client.aclose()
    assert web.alive()


async def _wait_for_subscriber(
    client: aioredis.Redis, stack: Stack, web: ManagedProcess, cut: int
) -> str:
    """The web process's subscriber, once it is back after the previous cut."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while True:
        found = await layer_subscriber(client, prefix=stack.prefix, pid=web.pid)
        if found is not None:
            return found
        assert loop.time() < deadline, f"cut {cut}: the web process did not resubscribe"
        await asyncio.sleep(0.05)


async def _update_with(
    ws: ClientConnection, price: float, *, within: float, symbol: str = "CUTUSDT"
) -> bool:
    """Whether an update carrying `price` for `symbol` arrives within `within` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while (left := deadline - loop.time()) > 0:
        try:
            frame = await receive(ws, timeout=left)
        except TimeoutError:
            return False
        if frame["type"] == "update" and any(
            value == price or (isinstance(value, dict) and value.get("last_price") == price)
            for path, value in frame["changes"].items()
            if path.startswith(f"market_data.{symbol}")
        ):
            return True
    return False


def readiness(port: int) -> tuple[int, dict[str, Any]]:
    """GET /health/ready: the status code and the body."""
    try:
        with urlopen(f"http://127.0.0.1:{port}/health/ready", timeout=5) as response:
            return response.status, json.loads(response.read())
    except HTTPError as exc:
        return exc.code, json.loads(exc.read())


async def test_undecodable_messages_on_the_group_channels_do_not_stop_updates(
    fresh_stack: Stack,
) -> None:
    # given a web process whose hub runs (a client is connected) and which is ready
    stack = fresh_stack
    stack.start_worker()
    port = stack.start_web()
    async with connect(stack.ws_url(type="tui", channels="market_data:DIEUSDT")) as ws:
        await receive(ws)
        wait_until(lambda: readiness(port)[0] == 200, timeout=20, what="readiness")
        groups = [
            name.decode() for name in stack.redis.pubsub_channels(f"{stack.prefix}.asgi__group__*")
        ]
        assert groups
        # when something other than the worker floods the hub's group channels with messages
        # that are not msgpack, or not events
        stop = threading.Event()
        flood = threading.Thread(target=_publish_garbage, args=(stack, groups, stop))
        flood.start()
        try:
            # then the client keeps receiving its updates throughout
            prices = itertools.count(1)
            for _ in range(10):
                deadline = asyncio.get_running_loop().time() + 10
                while True:
                    price = float(next(prices))
                    tick(stack, "DIEUSDT", price)
                    if await _update_with(ws, price, within=0.5, symbol="DIEUSDT"):
                        break
                    assert asyncio.get_running_loop().time() < deadline, "no update in the flood"
        finally:
            stop.set()
            flood.join()
    # and the hub's loops never stopped; the foreign messages were counted in its log
    status, body = readiness(port)
    assert status == 200, body
    assert body["checks"]["tasks"]["loops"]["hub-receive"]["restarts"] == 0
    assert "hub dropped undecodable channel-layer messages" in stack.processes[-1].output()


def _publish_garbage(stack: Stack, channels: list[str], stop: threading.Event) -> None:
    """Publish undecodable messages on `channels` until `stop` is set (in a thread)."""
    client = redis.Redis.from_url(stack.redis_url)
    try:
        while not stop.wait(0.02):
            for channel in channels:
                client.publish(channel, b"\xc1 not msgpack")
                client.publish(channel, msgpack.packb([1, 2, 3]))  # msgpack, not an event
    finally:
        client.close()
