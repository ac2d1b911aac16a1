"""The worker: the one owner of the trading state (STYLE: "one owner of state").

While it holds the leader lease it ingests Redis pub/sub, cache keys and the backends, applies
every valid record to the state, appends each change to the history log, and on every cadence
tick writes the changed entities to the shared snapshot and then sends the cadence's update —
encoded once per format — to the cadence's channel-layer group. Without the lease it waits as a
standby, and on taking over loads the shared snapshot and continues at its seq.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter as Tally
from collections.abc import Awaitable, Callable
from typing import Any, Final

import orjson
from redis.exceptions import RedisError

from aggregation import metrics
from aggregation.backends import Backend, BackendUnavailable
from aggregation.broadcast import update_event
from aggregation.feeds.redis_feed import RedisFeed, scan_cache_keys
from aggregation.history_log import HistoryLog
from aggregation.leader import LeaderLease, NotLeader
from aggregation.shared_snapshot import SharedSnapshot
from shared import redis_clients
from shared.cadences import CADENCES, interval_ms
from shared.clock import sleep_unless
from shared.config import Settings
from shared.core.records import (
    Accepted,
    Channel,
    Rejection,
    instant,
    is_key,
    parse_record,
)
from shared.core.state import TradingState
from shared.keys import RedisNames
from shared.process_id import process_id
from shared.supervision import TaskHealth
from shared.throttled_log import ThrottledLog

log = logging.getLogger(__name__)

_CHANNELS: Final = {channel.value: channel for channel in Channel}
_RELOAD_KINDS: Final = ("orderbook", "trades")
_MIRROR: Final = "mirror"  # the state's third cadence: what the shared snapshot has not seen
_FLUSH_S: Final = 0.05  # history flush period: 50 ms batches keep Redis calls few at 30k ticks/s
_RELOAD_S: Final = 0.05  # orderbook/trades cache-key reloads are batched over this period
_STRATEGY_RELOAD_MIN_S: Final = 1.0  # on-demand Strategy service calls: at most one a second
# A task that dies is restarted with every other one (the worker steps down and leads again). A
# worker whose tasks died this often within the window is crash-looping — the cause outlives a
# restart — so it exits, releasing the lease: a standby takes over at once, or the supervisor
# starts a fresh process (issue 13: a live leader that silently stopped broadcasting).
_CRASH_LIMIT: Final = 5
_CRASH_WINDOW_S: Final = 60.0


class TaskCrashLoop(RuntimeError):
    """The worker's tasks keep dying; the process must exit."""


class Aggregator:
    """The worker process's runner: leader election, ingest, ticks, history, shared snapshot."""

    def __init__(
        self,
        config: Settings,
        *,
        layer: Any,
        backends: list[Backend],
        worker_id: str | None = None,
    ) -> None:
        self.config = config
        self.names = RedisNames(config.redis_key_prefix, config.input_prefix)
        self.worker_id = worker_id or process_id()
        self.state = TradingState(cadences=(*CADENCES, _MIRROR), max_orders=config.max_orders)
        self.redis = redis_clients.async_client(config, socket_timeout=5, socket_connect_timeout=2)
        self.layer = layer
        self.backends = backends
        self.lease = LeaderLease(
            self.redis, key=self.names.leader, owner=self.worker_id, lease_ms=config.leader_lease_ms
        )
        self.shared = SharedSnapshot(self.redis, self.names)
        self.history = HistoryLog(
            self.redis,
            stream=self.names.history_stream,
            capacity=config.history_stream_maxlen,
            leader_key=self.names.leader,
            owner=self.worker_id,
        )
        self.feed = RedisFeed(
            config, self.names, on_message=self.ingest, on_connected=self.load_cache
        )
        self._tick_lock = asyncio.Lock()
        self._pending_reloads: set[str] = set()
        self._strategy_reload = asyncio.Event()
        self._full_mirror = False
        self._throttled = ThrottledLog(log)
        self._counts: Tally[tuple[str, str]] = Tally()
        self._lag_max = 0.0
        self._broadcasts: Tally[str] = Tally()
        self._reported_reconnects = 0
        self._reported_drops = 0
        self._reported_counts: Tally[tuple[str, str]] = Tally()
        self._ingest_counter = metrics.INGEST_MESSAGES
        self.leading = asyncio.Event()
        self.task_health = TaskHealth()

    # --- input -------------------------------------------------------------------------------

    def ingest(self, kind: str, suffix: str, payload: bytes) -> None:
        """Called for every pub/sub message: validate, apply, record; never raises on input."""
        channel = _CHANNELS.get(kind)
        if channel is None:
            if kind in _RELOAD_KINDS and is_key(suffix):
                self._pending_reloads.add(suffix)
                self._count(kind, "reload")
            else:
                self._count(kind if kind in _RELOAD_KINDS else "unknown", "invalid_channel")
            return
        result = parse_record(channel, payload, max_bytes=self.config.ingest_max_payload_bytes)
        if isinstance(result, Rejection):
            if channel is Channel.STRATEGIES:  # contract 3.1: anything else means "reload"
                self._strategy_reload.set()
                self._count(kind, "reload")
                return
            self._reject(kind, result)
            return
        if self.apply(result, kind):
            stamp = result.record.get("updated_at")
            if stamp is not None:  # producer-to-state lag, for live input only
                lag = time.time() - instant(stamp).timestamp()
                self._lag_max = max(self._lag_max, lag)

    def apply(self, accepted: Accepted, source: str) -> bool:
        """Apply one valid record; if it changed the state, log it for history and say so."""
        if self.state.is_stale(accepted):  # older than what a producer published since
            self._count(source, "stale")
            return False
        if not self.state.apply(accepted):
            self._count(source, "unchanged")
            return False
        self._count(source, "applied")
        self.history.record(accepted.channel.value, self.state.seq, accepted.record)
        return True

    async def load_cache(self) -> None:
        """Load every market-data cache key (at start, after a reconnect, each refresh)."""
        loaded = 0
        async for value in scan_cache_keys(self.redis, self.names):
            self._apply_payload(Channel.MARKET_DATA, value, "cache")
            loaded += 1
        log.info("cache keys loaded", extra={"keys": loaded, "seq": self.state.seq})

    def _apply_payload(self, channel: Channel, payload: bytes, source: str) -> None:
        result = parse_record(channel, payload, max_bytes=self.config.ingest_max_payload_bytes)
        if isinstance(result, Rejection):
            self._reject(source, result)
        else:
            self.apply(result, source)

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
        self._counts[(source, result)] += 1

    def ingest_counts(self) -> dict[tuple[str, str], int]:
        """Input messages so far by (source, result): applied, unchanged or a rejection reason."""
        return dict(self._counts)

    @property
    def feed_connected(self) -> bool:
        """Whether the pub/sub subscription is live (and the cache keys were loaded after it)."""
        return self.feed.connected

    # --- leadership --------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Lead when possible, stand by otherwise, until `stop` is set."""
        log.info("worker started", extra={"worker": self.worker_id})
        try:
            while not stop.is_set():
                if await self._try_acquire():
                    await self._lead(stop)
                    await self._exit_if_crash_looping()
                else:
                    await sleep_unless(stop, self.config.leader_renew_ms / 1000)
        finally:
            await self._close()

    async def _try_acquire(self) -> bool:
        try:
            return await self.lease.acquire()
        except RedisError as exc:
            self._throttled.warning("lease", "cannot reach Redis for the lease", error=str(exc))
            return False

    async def _lead(self, stop: asyncio.Event) -> None:
        snapshot, seq = await self.shared.load()
        if seq > self.state.seq:
            self.state.load(snapshot, seq=seq)
        else:
            self._full_mirror = True  # we are ahead of Redis (first start, or Redis lost it)
            if seq == 0:
                # Redis holds no snapshot: a first start, or a Redis restart without
                # persistence. Another worker may have led since our state was current, and
                # clients may have seen its seqs, so start past any seq that can exist: the
                # wall clock in microseconds (always ahead of a seq that began at such a floor
                # and grew by fewer than a million changes a second; below 2**53, so exact in
                # JavaScript). Every cadence restarts there, so every client resyncs once.
                floor = time.time_ns() // 1000
                self.state.load(self.state.snapshot(), seq=max(self.state.seq, floor))
        log.info("leading", extra={"worker": self.worker_id, "seq": self.state.seq})
        metrics.WORKER_IS_LEADER.set(1)
        self.leading.set()
        lost = asyncio.Event()
        done = asyncio.Event()
        tasks = [
            asyncio.create_task(self.feed.run(done), name="feed"),
            asyncio.create_task(self._renew(lost), name="renew"),
            asyncio.create_task(self._refresh(done), name="refresh"),
            asyncio.create_task(self._every(_RELOAD_S, self._reload_symbols, done), name="reload"),
            asyncio.create_task(self._every(_FLUSH_S, self._flush_history, done), name="flush"),
            asyncio.create_task(self._every(1.0, self._report, done), name="report"),
            *(
                asyncio.create_task(self._ticks(cadence, done), name=f"tick-{cadence}")
                for cadence in CADENCES
            ),
        ]
        waiters = [asyncio.create_task(stop.wait()), asyncio.create_task(lost.wait())]
        await asyncio.wait([*waiters, *tasks], return_when=asyncio.FIRST_COMPLETED)
        failed = False
        for task in [*tasks, *waiters]:
            exc = task.exception() if task.done() and not task.cancelled() else None
            if exc is not None:
                failed = True
                self.task_health.failed(task.get_name(), exc)
                log.error("worker task failed", extra={"task": task.get_name()}, exc_info=exc)
        if failed:  # say so at once, before the tasks restart
            with contextlib.suppress(RedisError, OSError):
                await self._heartbeat()
        done.set()
        self.leading.clear()
        metrics.WORKER_IS_LEADER.set(0)
        await self._step_down(tasks, waiters, stopping=stop.is_set())

    async def _exit_if_crash_looping(self) -> None:
        deaths = self.task_health.deaths_within(_CRASH_WINDOW_S)
        if deaths < _CRASH_LIMIT:
            return
        tasks = ", ".join(self.task_health.failing(_CRASH_WINDOW_S))
        log.error(
            "worker tasks keep failing; exiting so that another worker takes over",
            extra={"worker": self.worker_id, "deaths": deaths, "tasks": tasks},
        )
        with contextlib.suppress(RedisError, OSError):
            await self.lease.release()
        raise TaskCrashLoop(f"{deaths} task deaths within {_CRASH_WINDOW_S:.0f} s ({tasks})")

    async def _step_down(
        self, tasks: list[asyncio.Task[None]], waiters: list[asyncio.Task[Any]], *, stopping: bool
    ) -> None:
        budget = max(1.0, self.config.shutdown_timeout_s - 2.0)  # leave time to exit
        for task in [*tasks, *waiters]:
            task.cancel()
        await asyncio.gather(*tasks, *waiters, return_exceptions=True)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(budget):
                await self._flush_history()
                if stopping and self.lease.holds():
                    await self._mirror_now()
                    await self.lease.release()
        log.info(
            "stepped down",
            extra={
                "worker": self.worker_id,
                "seq": self.state.seq,
                "stopping": stopping,
                **self.history.stats(),
            },
        )

    async def _renew(self, lost: asyncio.Event) -> None:
        period = self.config.leader_renew_ms / 1000
        while True:
            await asyncio.sleep(period)
            try:
                held = await self.lease.acquire()  # renews ours, or re-takes it after a Redis loss
                await self._heartbeat()
            except RedisError as exc:
                self._throttled.warning("renew", "cannot renew the lease", error=str(exc))
                held = self.lease.holds()
            if not held:
                log.warning("lease lost to another worker", extra={"worker": self.worker_id})
                lost.set()
                return

    async def _heartbeat(self) -> None:
        beat = {
            "worker": self.worker_id,
            "seq": self.state.seq,
            "at": time.time(),
            "backends": {b.name: b.health().up for b in self.backends},
            # tasks that died lately (and were restarted): readiness names them
            "failed_tasks": self.task_health.report(self.config.task_failure_report_s),
        }
        await self.redis.set(self.names.heartbeat, orjson.dumps(beat), px=self.lease.lease_ms)

    # --- output ------------------------------------------------------------------------------

    async def _ticks(self, cadence: str, done: asyncio.Event) -> None:
        interval = interval_ms(self.config, cadence) / 1000
        loop = asyncio.get_running_loop()
        deadline = loop.time()
        while not done.is_set():
            deadline += interval
            delay = deadline - loop.time()
            if delay < -interval:  # fell far behind (a stall): realign, do not burst
                deadline = loop.time()
            await asyncio.sleep(max(0.0, delay))
            try:
                await self._tick(cadence)
            except (RedisError, OSError) as exc:
                # The update is lost for this tick; consumers see the gap and resync.
                self._throttled.warning(f"tick-{cadence}", "broadcast failed", error=str(exc))
            except NotLeader:
                self.lease.lose()
                return

    async def _tick(self, cadence: str) -> None:
        """Write the shared snapshot up to now, then send the cadence's update at that seq."""
        if not self.lease.holds():  # fencing: never broadcast without a lease we are sure of
            return
        async with self._tick_lock:  # writes and sends leave in seq order
            started = time.perf_counter()
            mirror = self.state.take(_MIRROR)  # taken together: the update's seq is mirrored
            update = self.state.take(cadence)
            await self._write_mirror(mirror.changes)
            if not update.changes:
                return
            await self.layer.group_send(self.names.group(cadence), update_event(cadence, update))
            self._broadcasts[cadence] += 1
            metrics.TICK_DURATION.labels(cadence).observe(time.perf_counter() - started)

    async def _write_mirror(self, changes: dict[str, Any]) -> None:
        if self._full_mirror:
            await self.shared.write_full(self.state, owner=self.worker_id)
            self._full_mirror = False
        elif changes and not await self.shared.write_changes(
            self.state, changes, owner=self.worker_id
        ):
            # Redis restarted empty. Clients may have missed updates while it was away, so
            # start a new interval one seq further: every client sees a base past its position
            # and resyncs from a fresh snapshot (contract section 8).
            log.warning("shared snapshot was missing in Redis; rewriting it and resyncing")
            self.state.load(self.state.snapshot(), seq=self.state.seq + 1)
            await self.shared.write_full(self.state, owner=self.worker_id)

    async def _mirror_now(self) -> None:
        async with self._tick_lock:
            await self._write_mirror(self.state.take(_MIRROR).changes)

    async def _flush_history(self) -> None:
        try:
            await self.history.flush()
        except NotLeader:  # another worker leads: what we buffered since is not history
            self.lease.lose()

    # --- periodic input ----------------------------------------------------------------------

    async def _refresh(self, done: asyncio.Event) -> None:
        """Reload cache keys and poll every backend each refresh period, and on demand."""
        last_strategy_poll = 0.0
        next_full = 0.0
        loop = asyncio.get_running_loop()
        first = True  # the feed loads the cache keys itself when it connects
        while not done.is_set():
            if loop.time() >= next_full:
                next_full = loop.time() + self.config.refresh_period_s
                if not first:
                    with contextlib.suppress(RedisError, OSError):
                        await self.load_cache()
                first = False
                await asyncio.gather(*(self._poll(b) for b in self.backends))
                last_strategy_poll = loop.time()
            elif self._strategy_reload.is_set() and (
                loop.time() - last_strategy_poll >= _STRATEGY_RELOAD_MIN_S
            ):
                self._strategy_reload.clear()
                last_strategy_poll = loop.time()
                await asyncio.gather(
                    *(self._poll(b) for b in self.backends if b.channel is Channel.STRATEGIES)
                )
            await sleep_unless(done, 0.1)

    async def _poll(self, backend: Backend) -> None:
        try:
            records = await backend.fetch()
        except BackendUnavailable as exc:
            metrics.BACKEND_UP.labels(backend.name).set(0)
            self._throttled.warning(
                f"backend:{backend.name}",
                "backend unavailable",
                backend=backend.name,
                error=str(exc),
            )
            return
        metrics.BACKEND_UP.labels(backend.name).set(1)
        for accepted in records:
            self.apply(accepted, backend.name)

    async def _reload_symbols(self) -> None:
        if not self._pending_reloads:
            return
        symbols = sorted(self._pending_reloads)
        self._pending_reloads.clear()
        values = await self.redis.mget([self.names.cache_key(s) for s in symbols])
        for value in values:
            if isinstance(value, bytes):
                self._apply_payload(Channel.MARKET_DATA, value, "cache")

    async def _every(
        self, period: float, step: Callable[[], Awaitable[None]], done: asyncio.Event
    ) -> None:
        while not done.is_set():
            await sleep_unless(done, period)
            try:
                await step()
            except (RedisError, OSError) as exc:
                self._throttled.warning(step.__name__, "periodic step failed", error=str(exc))

    async def _report(self) -> None:
        """One JSON log line a second with counts; the Prometheus metrics follow the same counts."""
        counts = self._counts - self._reported_counts
        self._reported_counts = Tally(self._counts)
        broadcasts, self._broadcasts = self._broadcasts, Tally()
        for (source, result), n in counts.items():
            self._ingest_counter.labels(source, result).inc(n)
        for cadence, n in broadcasts.items():
            metrics.UPDATES_BROADCAST.labels(cadence).inc(n)
        lag, self._lag_max = self._lag_max, 0.0
        metrics.STATE_UPDATE_LAG.set(lag)
        metrics.STATE_SEQ.set(self.state.seq)
        metrics.HISTORY_QUEUE_DEPTH.set(
            self.history.buffered + await self.redis.xlen(self.names.history_stream)
        )
        metrics.INGEST_RECONNECTS.inc(self.feed.reconnects - self._reported_reconnects)
        self._reported_reconnects = self.feed.reconnects
        metrics.HISTORY_ROWS_DROPPED.inc(self.history.dropped - self._reported_drops)
        self._reported_drops = self.history.dropped
        applied = sum(n for (_, result), n in counts.items() if result == "applied")
        log.info(
            "worker stats",
            extra={
                "event": "worker.stats",
                "seq": self.state.seq,
                "received": sum(counts.values()),
                "applied": applied,
                "by_result": {f"{s}:{r}": n for (s, r), n in sorted(counts.items())},
                "updates_broadcast": dict(broadcasts),
                "lag_max_s": round(lag, 4),
                "reconnects": self.feed.reconnects,
                "history": self.history.stats(),
                "counts": self.state.counts(),
            },
        )

    async def _close(self) -> None:
        for backend in self.backends:
            with contextlib.suppress(Exception):
                await backend.aclose()
        await self.redis.aclose()
