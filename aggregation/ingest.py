"""The worker's input: every pub/sub message, cache key and backend record, into the state.

Each record is validated (`parse_record`), put into the state unless stale or unchanged, and
handed to `history` when it changed something: the history log while the worker leads, its
standby buffer while it stands by (aggregation/standby.py). Input never raises: a bad message is
counted by (source, result) and logged at most once a second per reason.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter as Tally
from typing import Final, Protocol

import redis.asyncio as aioredis

from aggregation.feeds.redis_feed import scan_cache_keys
from shared.config import Settings
from shared.core.records import (
    Accepted,
    Channel,
    Record,
    Rejection,
    instant,
    is_key,
    parse_record,
)
from shared.core.state import TradingState
from shared.keys import RedisNames
from shared.throttled_log import ThrottledLog

log = logging.getLogger(__name__)

_CHANNELS: Final = {channel.value: channel for channel in Channel}
_RELOAD_KINDS: Final = ("orderbook", "trades")


class HistorySink(Protocol):
    """Where accepted changes go: `HistoryLog` (leading) or `StandbyBuffer` (standing by)."""

    def record(self, channel: str, seq: int, record: Record) -> None:
        """Take one accepted change, logged at `seq`."""


class Ingest:
    """Validates input, puts it into the state, records it; counts messages by (source, result)."""

    def __init__(
        self,
        config: Settings,
        *,
        state: TradingState,
        history: HistorySink,
        redis: aioredis.Redis,
        names: RedisNames,
        throttled: ThrottledLog,
    ) -> None:
        self._config = config
        self._state = state
        self.history = history  # switched by the worker on taking over and stepping down
        self._redis = redis
        self._names = names
        self._throttled = throttled
        self.counts: Tally[tuple[str, str]] = Tally()
        self.lag_max = 0.0  # the largest producer-to-state lag since the last stats line
        self.lag_since_beat: float | None = None  # the same since the last heartbeat (status)
        self.strategy_reload = asyncio.Event()  # a strategies message asked for a reload
        self._pending_reloads: set[str] = set()

    def ingest(self, kind: str, suffix: str, payload: bytes) -> None:
        """Called for every pub/sub message: validate, put, record; never raises on input."""
        channel = _CHANNELS.get(kind)
        if channel is None:
            if kind in _RELOAD_KINDS and is_key(suffix):
                self._pending_reloads.add(suffix)
                self._count(kind, "reload")
            else:
                self._count(kind if kind in _RELOAD_KINDS else "unknown", "invalid_channel")
            return
        result = parse_record(channel, payload, max_bytes=self._config.ingest_max_payload_bytes)
        if isinstance(result, Rejection):
            if channel is Channel.STRATEGIES:  # contract 3.1: anything else means "reload"
                self.strategy_reload.set()
                self._count(kind, "reload")
                return
            self._reject(kind, result)
            return
        if self.put(result, kind):
            stamp = result.record.get("updated_at")
            if stamp is not None:  # producer-to-state lag, for live input only
                lag = time.time() - instant(stamp).timestamp()
                self.lag_max = max(self.lag_max, lag)
                self.lag_since_beat = max(self.lag_since_beat or 0.0, lag)

    def put(self, accepted: Accepted, source: str) -> bool:
        """Put one valid record into the state; if it changed it, log it for history and say so.

        Counted as `applied` (the metric label dashboards use; docs/ARCHITECTURE.md).
        """
        if self._state.is_stale(accepted):  # older than what a producer published since
            self._count(source, "stale")
            return False
        if not self._state.put(accepted):
            self._count(source, "unchanged")
            return False
        self._count(source, "applied")
        self.history.record(accepted.channel.value, self._state.seq, accepted.record)
        return True

    async def load_cache(self) -> None:
        """Load every market-data cache key (at start, after a reconnect, each refresh)."""
        loaded = 0
        async for value in scan_cache_keys(self._redis, self._names):
            self._put_payload(Channel.MARKET_DATA, value, "cache")
            loaded += 1
        log.info("cache keys loaded", extra={"keys": loaded, "seq": self._state.seq})

    async def reload_symbols(self) -> None:
        """Read the cache keys of the symbols an orderbook or trades message named."""
        if not self._pending_reloads:
            return
        symbols = sorted(self._pending_reloads)
        self._pending_reloads.clear()
        values = await self._redis.mget([self._names.cache_key(s) for s in symbols])
        for value in values:
            if isinstance(value, bytes):
                self._put_payload(Channel.MARKET_DATA, value, "cache")

    def _put_payload(self, channel: Channel, payload: bytes, source: str) -> None:
        result = parse_record(channel, payload, max_bytes=self._config.ingest_max_payload_bytes)
        if isinstance(result, Rejection):
            self._reject(source, result)
        else:
            self.put(result, source)

    def _reject(self, source: str, rejection: Rejection) -> None:
        self._count(source, rejection.reason)
        self._throttled.warning(
            f"{source}:{rejection.reason}",
            "input rejected",
            source=source,
            reason=rejection.reason,
            field=rejection.field,
            detail=rejection.detail[:200],
        )

    def _count(self, source: str, result: str) -> None:
        self.counts[(source, result)] += 1
