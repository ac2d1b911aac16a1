"""The worker's `worker.stats` line once a second, and the Prometheus metrics of its counts."""

from __future__ import annotations

import logging
from collections import Counter as Tally

import redis.asyncio as aioredis

from aggregation import metrics
from aggregation.feeds.redis_feed import RedisFeed
from aggregation.history_log import HistoryLog
from aggregation.ingest import Ingest
from aggregation.ticks import Ticker
from shared.core.state import TradingState
from shared.keys import RedisNames

log = logging.getLogger(__name__)


class WorkerStats:
    """Reports what changed since the last report: input by result, updates sent, lag, depth."""

    def __init__(
        self,
        *,
        state: TradingState,
        ingest: Ingest,
        ticker: Ticker,
        history: HistoryLog,
        feed: RedisFeed,
        redis: aioredis.Redis,
        names: RedisNames,
    ) -> None:
        self._state = state
        self._ingest = ingest
        self._ticker = ticker
        self._history = history
        self._feed = feed
        self._redis = redis
        self._names = names
        self._reported_reconnects = 0
        self._reported_drops = 0
        self._reported_counts: Tally[tuple[str, str]] = Tally()
        self._ingest_counter = metrics.INGEST_MESSAGES

    async def report(self) -> None:
        """One JSON log line a second with counts; the Prometheus metrics follow the same counts."""
        counts = self._ingest.counts - self._reported_counts
        self._reported_counts = Tally(self._ingest.counts)
        broadcasts, self._ticker.broadcasts = self._ticker.broadcasts, Tally()
        for (source, result), n in counts.items():
            self._ingest_counter.labels(source, result).inc(n)
        for cadence, n in broadcasts.items():
            metrics.UPDATES_BROADCAST.labels(cadence).inc(n)
        lag, self._ingest.lag_max = self._ingest.lag_max, 0.0
        metrics.STATE_UPDATE_LAG.set(lag)
        metrics.STATE_SEQ.set(self._state.seq)
        metrics.HISTORY_QUEUE_DEPTH.set(
            self._history.buffered + await self._redis.xlen(self._names.history_stream)
        )
        metrics.INGEST_RECONNECTS.inc(self._feed.reconnects - self._reported_reconnects)
        self._reported_reconnects = self._feed.reconnects
        metrics.HISTORY_ROWS_DROPPED.inc(self._history.dropped - self._reported_drops)
        self._reported_drops = self._history.dropped
        applied = sum(n for (_, result), n in counts.items() if result == "applied")
        log.info(
            "worker stats",
            extra={
                "event": "worker.stats",
                "seq": self._state.seq,
                "received": sum(counts.values()),
                "applied": applied,
                "by_result": {f"{s}:{r}": n for (s, r), n in sorted(counts.items())},
                "updates_broadcast": dict(broadcasts),
                "lag_max_s": round(lag, 4),
                "reconnects": self._feed.reconnects,
                "history": self._history.stats(),
                "counts": self._state.counts(),
            },
        )
