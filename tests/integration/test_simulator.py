"""The simulator against real Redis and its own real servers: what it publishes, serves and logs."""

from __future__ import annotations

import asyncio
import logging
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import orjson
import pytest
import redis
import redis.asyncio as aioredis
from django.conf import settings
from django.core.management import call_command
from django.test import override_settings
from pydantic import AnyUrl
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from aggregation.backends import Backend, BackendUnavailable, build_backends
from aggregation.simulator.desk import Desk
from aggregation.simulator.process import run_simulator
from aggregation.simulator.publisher import CACHE_TTL_S, Publisher
from shared.config import Settings
from shared.core.records import Accepted, Channel, parse_record

pytestmark = pytest.mark.integration

KINDS = {
    "market_data": Channel.MARKET_DATA,
    "orders": Channel.ORDERS,
    "positions": Channel.POSITIONS,
    "account": Channel.ACCOUNT,
    "strategies": Channel.STRATEGIES,
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def wait_for(condition: Callable[[], Awaitable[bool] | bool], *, within_s: float) -> None:
    """Poll `condition` every 20 ms until it holds; fail after `within_s` seconds."""
    deadline = time.monotonic() + within_s
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        assert time.monotonic() < deadline, f"condition not met within {within_s} s"
        await asyncio.sleep(0.02)


@pytest.fixture
async def subscriber(redis_url: str, key_prefix: str) -> AsyncIterator[aioredis.client.PubSub]:
    """A pub/sub connection subscribed to every channel under `key_prefix`."""
    client = aioredis.Redis.from_url(redis_url)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    await pubsub.psubscribe(f"{key_prefix}*")
    confirmation = await pubsub.get_message(timeout=5.0)  # the psubscribe reply: now listening
    assert confirmation is None or confirmation["type"] == "psubscribe"
    yield pubsub
    await pubsub.aclose()
    await client.aclose()


async def drain(pubsub: aioredis.client.PubSub, *, until: Callable[[list[Any]], bool]) -> list[Any]:
    """Read messages until `until(messages)` holds (at most 5 s)."""
    messages: list[Any] = []
    deadline = time.monotonic() + 5.0
    while not until(messages) and time.monotonic() < deadline:
        message = await pubsub.get_message(timeout=0.1)
        if message is not None:
            messages.append(message)
    return messages


async def test_publisher_publishes_valid_ticks_and_cache_keys(
    aredis: aioredis.Redis, key_prefix: str, subscriber: aioredis.client.PubSub
) -> None:
    # given a desk of 5 symbols and a publisher at 1000 ticks/s
    desk = Desk(symbols=5, seed=11)
    publisher = Publisher(redis=aredis, desk=desk, input_prefix=key_prefix, ticks_per_s=1000)

    # when it publishes 200 ticks
    stats = await publisher.run(max_ticks=200)

    # then a subscriber heard exactly those ticks, and every message is a valid record
    assert stats.ticks == 200
    messages = await drain(
        subscriber,
        until=lambda got: sum(b"market_data:" in m["channel"] for m in got) >= 200,
    )
    by_kind: dict[str, list[Any]] = {}
    for message in messages:
        kind, key = message["channel"].decode().removeprefix(key_prefix).split(":")
        by_kind.setdefault(kind, []).append(message)
        if kind in KINDS:
            result = parse_record(KINDS[kind], message["data"], max_bytes=65536)
            assert isinstance(result, Accepted), (kind, result)
            assert key == (result.key or "main")
        else:
            assert kind in ("orderbook", "trades")
            assert orjson.loads(message["data"])["symbol"] == key
    assert len(by_kind["market_data"]) == 200
    assert {"market_data", "account"} <= set(by_kind)
    for kind, count in [("account", stats.accounts), ("orders", stats.orders)]:
        assert len(by_kind.get(kind, [])) == count

    # and each symbol's cache key holds its last tick, expiring like the earlier service's
    last = {}
    for message in by_kind["market_data"]:
        last[message["channel"].decode()] = message["data"]
    assert len(last) == 5
    for key, payload in last.items():
        cached = await aredis.get(key)
        assert cached == payload
        assert isinstance(parse_record(Channel.MARKET_DATA, cached, max_bytes=65536), Accepted)
        assert 0 < await aredis.ttl(key) <= CACHE_TTL_S


async def test_publisher_keeps_the_rate(aredis: aioredis.Redis, key_prefix: str) -> None:
    publisher = Publisher(
        redis=aredis, desk=Desk(symbols=3, seed=1), input_prefix=key_prefix, ticks_per_s=200
    )
    started = time.monotonic()
    stats = await publisher.run(max_ticks=100)
    elapsed = time.monotonic() - started
    assert stats.ticks == 100
    assert 0.4 <= elapsed < 1.5  # 100 ticks at 200/s: half a second, not a burst


class PrivateRedis:
    """A throwaway redis-server on a free loopback port, which a test may stop and restart."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the server (again, on the same port, empty)."""
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no"]
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    def stop(self) -> None:
        """Stop the server and wait for it to exit."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    """A stopped PrivateRedis; whatever runs at the end is stopped."""
    assert shutil.which("redis-server"), "redis-server must be installed (.ci/run installs it)"
    server = PrivateRedis()
    yield server
    server.stop()


async def test_publisher_reconnects_after_a_redis_restart(private_redis: PrivateRedis) -> None:
    # No retries inside redis-py, so the outage reaches the publisher's own reconnect loop.
    client = aioredis.Redis.from_url(
        private_redis.url, socket_timeout=2, retry=Retry(NoBackoff(), 0)
    )
    checker = redis.Redis.from_url(private_redis.url, socket_timeout=2)

    def is_up() -> bool:
        try:
            return bool(checker.ping())
        except redis.ConnectionError:
            return False

    stop = asyncio.Event()
    desk = Desk(symbols=2, seed=5)
    publisher = Publisher(redis=client, desk=desk, input_prefix="", ticks_per_s=200)
    task: asyncio.Task[Any] | None = None
    try:
        private_redis.start()
        await wait_for(is_up, within_s=10)
        task = asyncio.create_task(publisher.run(duration_s=20, stop=stop))
        await wait_for(lambda: publisher.stats.ticks >= 20, within_s=5)

        # when Redis goes away and comes back empty
        private_redis.stop()
        await wait_for(lambda: publisher.stats.redis_errors >= 2, within_s=10)
        before = publisher.stats.ticks
        private_redis.start()
        await wait_for(is_up, within_s=10)

        # then the publisher carries on by itself and refills the cache keys
        await wait_for(lambda: publisher.stats.ticks >= before + 20, within_s=15)
        await wait_for(lambda: checker.exists("market_data:BTCUSDT") == 1, within_s=5)
    finally:
        stop.set()
        if task is not None:
            await asyncio.wait_for(task, timeout=10)
        await client.aclose()
        checker.close()


async def fetch_when_up(backend: Backend, *, within_s: float) -> list[Accepted]:
    """Fetch until the service answers (it may still be starting); fail after `within_s`."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            return await backend.fetch()
        except BackendUnavailable:
            assert time.monotonic() < deadline, f"{backend.name} did not answer"
            await asyncio.sleep(0.05)


def simulator_config(key_prefix: str, **update: Any) -> Settings:
    """The test settings with free loopback ports and this test's input prefix."""
    config: Settings = settings.CONFIG
    return config.model_copy(
        update={
            "order_service_grpc": f"127.0.0.1:{free_port()}",
            "account_service_grpc": f"127.0.0.1:{free_port()}",
            "strategy_service_http": AnyUrl(f"http://127.0.0.1:{free_port()}"),
            "input_prefix": key_prefix,
            "simulator_symbols": 3,
            "simulator_ticks_per_s": 100.0,
            "backend_retry_backoff_s": 0.05,
        }
        | update
    )


async def test_run_simulator_serves_publishes_logs_and_stops(
    key_prefix: str,
    aredis: aioredis.Redis,
    subscriber: aioredis.client.PubSub,
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = simulator_config(key_prefix)
    stop = asyncio.Event()
    caplog.set_level(logging.INFO, logger="aggregation.simulator")
    task = asyncio.create_task(run_simulator(config, stop=stop, seed=3))
    backends = build_backends(config)
    try:
        # the three services answer, from the same desk
        for backend in backends:
            assert await fetch_when_up(backend, within_s=10)
            assert backend.health().up

        # market data flows, and one line of counts is logged per second
        messages = await drain(subscriber, until=lambda got: len(got) >= 10)
        assert len(messages) >= 10
        await wait_for(
            lambda: any(r.getMessage() == "simulator published" for r in caplog.records),
            within_s=5,
        )
    finally:
        stop.set()
        stats = await asyncio.wait_for(task, timeout=10)
        for backend in backends:
            await backend.aclose()
    line = next(r for r in caplog.records if r.getMessage() == "simulator published")
    assert line.ticks > 0  # type: ignore[attr-defined]
    assert line.ticks_total >= line.ticks  # type: ignore[attr-defined]
    assert stats.ticks > 0
    published = [r for r in caplog.records if r.name == "aggregation.simulator"]
    assert len(published) < 20  # counts per second, never a line per message


def test_simulate_command_runs_for_a_duration(key_prefix: str, redis_client: redis.Redis) -> None:
    config = simulator_config(key_prefix)
    with override_settings(CONFIG=config):
        call_command(
            "simulate", "--duration", "0.5", "--symbols", "2", "--rate", "40", "--seed", "1"
        )
    keys = sorted(k.decode() for k in redis_client.scan_iter(match=f"{key_prefix}market_data:*"))
    assert keys == [f"{key_prefix}market_data:BTCUSDT", f"{key_prefix}market_data:ETHUSDT"]
