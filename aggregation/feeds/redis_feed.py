"""The Redis input: pattern subscriptions to the seven channels of contract 3.1, and cache keys.

The subscriber reconnects by itself with capped exponential backoff (Redis restarted, or Redis
cut it off for falling behind its pub/sub output-buffer limit), and after every (re)connect the
caller reloads the cache keys, since ticks published while it was away are lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Final

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from shared.clock import sleep_unless
from shared.keys import RedisNames
from shared.redis_clients import RedisSource, async_client

log = logging.getLogger(__name__)

# The input kinds of contract 3.1, as they appear before the first ':' of a channel name.
INPUT_KINDS: Final = (
    "market_data",
    "orderbook",
    "trades",
    "orders",
    "positions",
    "account",
    "strategies",
)
# Sends a PING on an idle subscription so a dead connection is noticed, not waited on forever.
_HEALTH_CHECK_S: Final = 5
# A master that vanished (a failover) must not hold a reconnect: the runner's own 2 s.
_CONNECT_TIMEOUT_S: Final = 2
_SCAN_COUNT: Final = 1000  # keys per SCAN step: large enough to be quick, small enough not to block
_MGET_BATCH: Final = 500

MessageHandler = Callable[[str, str, bytes], None]


class RedisFeed:
    """Subscribes to the input patterns; hands each message to `on_message(kind, suffix, data)`."""

    def __init__(
        self,
        redis: RedisSource,
        names: RedisNames,
        *,
        on_message: MessageHandler,
        on_connected: Callable[[], Awaitable[None]],
    ) -> None:
        self._redis = redis
        self._names = names
        self._on_message = on_message
        self._on_connected = on_connected
        self._prefix_len = len(names.input_prefix)
        self.reconnects = 0
        self.connected = False

    async def run(self, stop: asyncio.Event) -> None:
        """Read messages until `stop` is set, reconnecting whenever the connection breaks."""
        attempt = 0
        while not stop.is_set():
            client = async_client(
                self._redis,
                socket_timeout=None,
                socket_connect_timeout=_CONNECT_TIMEOUT_S,
                health_check_interval=_HEALTH_CHECK_S,
            )
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.psubscribe(*(self._names.input_pattern(k) for k in INPUT_KINDS))
                await self._on_connected()
                self.connected = True
                attempt = 0
                await self._read(pubsub, stop)
            except (RedisError, OSError) as exc:
                self.connected = False
                attempt += 1
                self.reconnects += 1
                delay = self._backoff(attempt)
                log.warning(
                    "redis subscriber lost; reconnecting",
                    extra={"error": str(exc) or type(exc).__name__, "retry_in_s": delay},
                )
                await sleep_unless(stop, delay)
            finally:
                self.connected = False
                await _close(pubsub, client)

    async def _read(self, pubsub: aioredis.client.PubSub, stop: asyncio.Event) -> None:
        handle = self._on_message
        cut = self._prefix_len
        while not stop.is_set():
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if message is None or message["type"] != "pmessage":
                continue
            name = message["channel"].decode("utf-8", "replace")[cut:]
            kind, _, suffix = name.partition(":")
            try:
                handle(kind, suffix, message["data"])
            except Exception:  # a bug must cost one message, never the subscription
                log.exception("input message could not be handled", extra={"kind": kind[:64]})

    @staticmethod
    def _backoff(attempt: int) -> float:
        # 0.1 s doubling to 1 s, +-20 % jitter so that processes restarted together do not
        # reconnect in lockstep. The cap is how late the worker may hear its input again after
        # Redis is back (a Sentinel failover: the cap of 5 s it had put first ticks at failover
        # + 1.7 s and more, tests/faults/test_sentinel_failover.py); one connect a second costs a
        # down Redis nothing. (tenacity's retry loop does not fit a connection that lives for
        # days between failures: its attempt count would never reset.)
        return min(1.0, 0.1 * 2.0 ** (attempt - 1)) * random.uniform(0.8, 1.2)


async def scan_cache_keys(client: aioredis.Redis, names: RedisNames) -> AsyncIterator[bytes]:
    """Yield the value of every market-data cache key (SCAN, never KEYS; MGET in batches)."""
    batch: list[bytes] = []
    async for key in client.scan_iter(match=names.cache_key("*"), count=_SCAN_COUNT):
        batch.append(key)
        if len(batch) >= _MGET_BATCH:
            for value in await client.mget(batch):
                if isinstance(value, bytes):
                    yield value
            batch = []
    if batch:
        for value in await client.mget(batch):
            if isinstance(value, bytes):
                yield value


async def _close(pubsub: aioredis.client.PubSub, client: aioredis.Redis) -> None:
    with contextlib.suppress(RedisError, OSError):  # the connection may already be gone
        await pubsub.aclose()  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
    await client.aclose()
