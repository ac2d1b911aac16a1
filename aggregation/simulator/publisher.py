"""Publishes the demo desk to Redis as the producers of contract 3.1 would, at a steady rate.

Market data goes out at `ticks_per_s` in total, spread over the symbols round-robin, each tick
both published on `market_data:{SYMBOL}` and written to the cache key of the same name. Orders,
positions, the account, strategies and the occasional order book or trade follow at slower
cadences. Each batch is one pipeline round trip. If Redis goes away the unsent batch is kept,
retried with backoff, and publishing continues where it stopped.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Final

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from aggregation.simulator.desk import Desk
from shared.clock import sleep_unless
from shared.core.records import Record

logger = logging.getLogger("aggregation.simulator")

# 20 round trips a second: ticks go out smoothly, and one pipeline carries many of them.
BATCH_INTERVAL_S: Final = 0.05
# The earlier service's producers kept `market_data:{SYMBOL}` cache keys for 5 minutes.
CACHE_TTL_S: Final = 300
# How often each slower kind of event is produced (seconds).
ORDERS_EVERY_S: Final = 0.5
POSITIONS_EVERY_S: Final = 1.0  # the account goes out with the positions it follows
STRATEGIES_EVERY_S: Final = 2.0
EXTRAS_EVERY_S: Final = 1.5  # an order book and a trade of one symbol
# Reconnect backoff: quick at first (a Redis restart takes a second or two), then capped so
# an outage of minutes is retried every few seconds, not hammered.
RETRY_FIRST_S: Final = 0.1
RETRY_MAX_S: Final = 5.0


@dataclass(slots=True)
class PublishStats:
    """Messages published since start, by kind, and Redis failures survived."""

    ticks: int = 0
    orders: int = 0
    positions: int = 0
    accounts: int = 0
    strategies: int = 0
    extras: int = 0
    batches: int = 0
    redis_errors: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counts as a plain dict (for log lines)."""
        return {field.name: getattr(self, field.name) for field in fields(self)}


@dataclass(slots=True)
class _Batch:
    messages: list[tuple[str, bytes]]  # (channel, payload) to publish
    cache: list[tuple[str, bytes]]  # (key, payload) to SET with the TTL
    counts: PublishStats  # what it adds to the totals once sent


class Publisher:
    """Publishes a desk's changes to Redis until a bound is reached or `stop` is set."""

    def __init__(
        self,
        *,
        redis: aioredis.Redis,
        desk: Desk,
        input_prefix: str,
        ticks_per_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.redis = redis
        self.desk = desk
        self.prefix = input_prefix
        self.ticks_per_s = ticks_per_s
        self.stats = PublishStats()
        self._clock = clock
        self._due: dict[str, float] = {}

    async def run(
        self,
        *,
        max_ticks: int | None = None,
        duration_s: float | None = None,
        stop: asyncio.Event | None = None,
    ) -> PublishStats:
        """Publish until `max_ticks` ticks are out, `duration_s` has passed or `stop` is set."""
        stop = stop or asyncio.Event()
        start = self._clock()
        deadline = math.inf if duration_s is None else start + duration_s
        schedule_start, scheduled = start, 0  # ticks owed = rate * (now - schedule_start)
        while not stop.is_set() and self._clock() < deadline:
            if max_ticks is not None and self.stats.ticks >= max_ticks:
                break
            now = self._clock()
            owed = math.floor(self.ticks_per_s * (now - schedule_start)) - scheduled
            # After a stall (an outage, a slow Redis) do not burst the backlog: start afresh.
            cap = max(1, math.ceil(self.ticks_per_s))
            if owed > cap:
                schedule_start, scheduled, owed = now, 0, 1
            if max_ticks is not None:
                owed = min(owed, max_ticks - self.stats.ticks)
            scheduled += owed
            batch = self._build(owed, now)
            if batch.messages and not await self._send(batch, stop, deadline):
                break
            next_batch = now + BATCH_INTERVAL_S
            pause = min(next_batch, deadline) - self._clock()
            if pause > 0:  # behind: publish the next batch at once
                await sleep_unless(stop, pause)
        return self.stats

    def _build(self, ticks: int, now: float) -> _Batch:
        batch = _Batch([], [], PublishStats(batches=1))
        for record in self.desk.tick_market(ticks) if ticks > 0 else []:
            payload = orjson.dumps(record)
            key = f"{self.prefix}market_data:{record['symbol']}"
            batch.messages.append((key, payload))
            batch.cache.append((key, payload))
        batch.counts.ticks = ticks
        if self._is_due("orders", ORDERS_EVERY_S, now):
            orders = self.desk.step_orders()
            self._add(batch, "orders", "symbol", orders)
            batch.counts.orders = len(orders)
        if self._is_due("positions", POSITIONS_EVERY_S, now):
            positions = self.desk.step_positions()
            self._add(batch, "positions", "symbol", positions)
            batch.counts.positions = len(positions)
            batch.messages.append((f"{self.prefix}account:main", orjson.dumps(self.desk.account())))
            batch.counts.accounts = 1
        if self._is_due("strategies", STRATEGIES_EVERY_S, now):
            strategies = self.desk.step_strategies()
            self._add(batch, "strategies", "id", strategies)
            batch.counts.strategies = len(strategies)
        if self._is_due("extras", EXTRAS_EVERY_S, now):
            symbol = self.desk.random_symbol()
            book, trade = self.desk.order_book(symbol), self.desk.trade(symbol)
            batch.messages.append((f"{self.prefix}orderbook:{symbol}", orjson.dumps(book)))
            batch.messages.append((f"{self.prefix}trades:{symbol}", orjson.dumps(trade)))
            batch.counts.extras = 2
        return batch

    def _add(self, batch: _Batch, kind: str, key_field: str, records: list[Record]) -> None:
        for record in records:
            channel = f"{self.prefix}{kind}:{record[key_field]}"
            batch.messages.append((channel, orjson.dumps(record)))

    def _is_due(self, kind: str, every_s: float, now: float) -> bool:
        if now < self._due.get(kind, now):
            return False
        self._due[kind] = now + every_s
        return True

    async def _send(self, batch: _Batch, stop: asyncio.Event, deadline: float) -> bool:
        """Send a batch, retrying through Redis outages; False if stopped before it went out."""
        delay = RETRY_FIRST_S
        while True:
            try:
                async with self.redis.pipeline(transaction=False) as pipe:
                    # The cache key first: a consumer hearing the tick may read it right away.
                    for key, payload in batch.cache:
                        pipe.set(key, payload, ex=CACHE_TTL_S)
                    for channel, payload in batch.messages:
                        pipe.publish(channel, payload)
                    await pipe.execute()
            except (RedisError, OSError) as exc:
                self.stats.redis_errors += 1
                logger.warning(
                    "redis unavailable, retrying",
                    extra={"error": f"{type(exc).__name__}: {exc}", "retry_in_s": delay},
                )
                if stop.is_set() or self._clock() + delay >= deadline:
                    return False
                await sleep_unless(stop, delay)
                delay = min(delay * 2, RETRY_MAX_S)
                continue
            for field in fields(PublishStats):
                name = field.name
                setattr(self.stats, name, getattr(self.stats, name) + getattr(batch.counts, name))
            return True
