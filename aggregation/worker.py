"""The worker: the one owner of the trading state (STYLE: "one owner of state").

Every worker, leading or not, ingests Redis pub/sub, cache keys and the backends and puts every
valid record into its own state. The one holding the leader lease appends each change to the
history log, and on every cadence tick writes the changed entities to the shared snapshot and
then sends the cadence's update — encoded once per format — to the cadence's channel-layer group.
A hot standby does neither: it keeps its recent history rows in a bounded buffer, waits for the
lease to expire, and on taking over continues from its own state at a seq past the shared
snapshot's, and appends the rows the old leader had not (aggregation/takeover.py, standby.py).

This module is the leadership: ingest always, acquire the lease, run the leader's tasks, step
down. Each task is a job of its own module: `ingest.py` (input into the state), `ticks.py`
(updates and the shared snapshot), `polling.py` (the backends), `stats.py` (the `worker.stats`
line), `takeover.py` (standing by and taking over), `standby.py` (the standby's history rows).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

import orjson
from redis.exceptions import RedisError

from aggregation import metrics
from aggregation.backends import Backend
from aggregation.crash_loop import exit_if_crash_looping, record_failures
from aggregation.feeds.redis_feed import RedisFeed
from aggregation.history_log import HistoryLog
from aggregation.ingest import Ingest
from aggregation.leader import LeaderLease, NotLeader
from aggregation.polling import BackendPoller
from aggregation.shared_snapshot import SharedSnapshot
from aggregation.standby import StandbyBuffer
from aggregation.stats import WorkerStats
from aggregation.takeover import Takeover, wait_for_lease
from aggregation.ticks import MIRROR, Ticker
from shared import redis_clients
from shared.cadences import CADENCES
from shared.channel_layer import ChannelLayer
from shared.clock import sleep_unless
from shared.config import Settings
from shared.core.state import TradingState
from shared.keys import RedisNames
from shared.process_id import process_id
from shared.supervision import TaskHealth
from shared.throttled_log import ThrottledLog

log = logging.getLogger(__name__)

_FLUSH_S: Final = 0.05  # history flush period: 50 ms batches keep Redis calls few at 30k ticks/s
_RELOAD_S: Final = 0.05  # orderbook/trades cache-key reloads are batched over this period


class Worker:
    """The worker process: leader election, and while leading its ingest, ticks and polling."""

    def __init__(
        self,
        config: Settings,
        *,
        layer: ChannelLayer,
        backends: list[Backend],
        worker_id: str | None = None,
    ) -> None:
        self.config = config
        self.names = RedisNames(config.redis_key_prefix, config.input_prefix)
        self.worker_id = worker_id or process_id()
        self.state = TradingState(cadences=(*CADENCES, MIRROR), max_orders=config.max_orders)
        self.redis = redis_clients.async_client(config, socket_timeout=5, socket_connect_timeout=2)
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
            appended_key=self.names.history_appended,
            keep_appended_s=config.standby_buffer_s,
        )
        self.standby_buffer = StandbyBuffer(
            window_s=config.standby_buffer_s, max_rows=config.standby_buffer_rows
        )
        self._throttled = ThrottledLog(log)
        self.ingest = Ingest(
            config,
            state=self.state,
            history=self.standby_buffer,  # until it leads
            redis=self.redis,
            names=self.names,
            throttled=self._throttled,
        )
        self.feed = RedisFeed(
            config, self.names, on_message=self.ingest.ingest, on_connected=self.ingest.load_cache
        )
        self.ticker = Ticker(
            config,
            state=self.state,
            lease=self.lease,
            shared=self.shared,
            layer=layer,
            names=self.names,
            throttled=self._throttled,
            owner=self.worker_id,
        )
        self.poller = BackendPoller(
            config, backends=backends, ingest=self.ingest, throttled=self._throttled
        )
        self.stats = WorkerStats(
            state=self.state,
            ingest=self.ingest,
            ticker=self.ticker,
            history=self.history,
            feed=self.feed,
            redis=self.redis,
            names=self.names,
        )
        self.takeover = Takeover(
            config,
            state=self.state,
            shared=self.shared,
            ticker=self.ticker,
            ingest=self.ingest,
            history=self.history,
            standby_buffer=self.standby_buffer,
            redis=self.redis,
            names=self.names,
            worker_id=self.worker_id,
        )
        self.leading = asyncio.Event()
        self.task_health = TaskHealth()
        self._ingest_tasks: list[asyncio.Task[None]] = []
        self._ingest_done = asyncio.Event()

    def ingest_counts(self) -> dict[tuple[str, str], int]:
        """Input messages so far by (source, result): applied, unchanged or a rejection reason."""
        return dict(self.ingest.counts)

    @property
    def feed_connected(self) -> bool:
        """Whether the pub/sub subscription is live (and the cache keys were loaded after it)."""
        return self.feed.connected

    async def run(self, stop: asyncio.Event) -> None:
        """Ingest always; lead when possible, stand by otherwise, until `stop` is set."""
        log.info("worker started", extra={"worker": self.worker_id})
        try:
            while not stop.is_set():
                self._start_ingesting()
                if await self._try_acquire():
                    await self._lead(stop)
                    await self._exit_if_crash_looping()
                else:
                    await self._stand_by(stop)
        finally:
            await self._stop_ingesting()
            await self._close()

    def _start_ingesting(self) -> None:
        """Run the input tasks (pub/sub, backends, symbol reloads) unless they run already."""
        if self._ingest_tasks:
            return
        self._ingest_done = done = asyncio.Event()
        self._ingest_tasks = [
            asyncio.create_task(self.feed.run(done), name="feed"),
            asyncio.create_task(self.poller.run(done), name="refresh"),
            asyncio.create_task(
                self._every(_RELOAD_S, self.ingest.reload_symbols, done), name="reload"
            ),
        ]

    async def _stop_ingesting(self) -> None:
        self._ingest_done.set()
        tasks, self._ingest_tasks = self._ingest_tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _stand_by(self, stop: asyncio.Event) -> None:
        """Wait until the lease may be free (its PTTL), ingesting; return early if input died."""
        renew_s = self.config.leader_renew_ms / 1000
        if await wait_for_lease(self.lease, renew_s=renew_s, stop=stop, inputs=self._ingest_tasks):
            record_failures(self.task_health, self._ingest_tasks)
            await self._stop_ingesting()  # restarted at once by run()
            await self._exit_if_crash_looping()

    async def _try_acquire(self) -> bool:
        try:
            return await self.lease.acquire()
        except RedisError as exc:
            self._throttled.warning("lease", "cannot reach Redis for the lease", error=str(exc))
            return False

    async def _lead(self, stop: asyncio.Event) -> None:
        await self.takeover.run()
        log.info("leading", extra={"worker": self.worker_id, "seq": self.state.seq})
        metrics.WORKER_IS_LEADER.set(1)
        self.leading.set()
        lost = asyncio.Event()
        done = asyncio.Event()
        tasks = [
            asyncio.create_task(self._renew(lost), name="renew"),
            asyncio.create_task(self._every(_FLUSH_S, self._flush_history, done), name="flush"),
            asyncio.create_task(self._every(1.0, self.stats.report, done), name="report"),
            *(
                asyncio.create_task(self.ticker.run(cadence, done), name=f"tick-{cadence}")
                for cadence in CADENCES
            ),
        ]
        waiters = [asyncio.create_task(stop.wait()), asyncio.create_task(lost.wait())]
        ingesting = list(self._ingest_tasks)
        await asyncio.wait([*waiters, *tasks, *ingesting], return_when=asyncio.FIRST_COMPLETED)
        failed = record_failures(self.task_health, [*tasks, *waiters, *ingesting])
        if failed:  # say so at once, before the tasks restart
            with contextlib.suppress(RedisError, OSError):
                await self._heartbeat()
        done.set()
        self.leading.clear()
        metrics.WORKER_IS_LEADER.set(0)
        if failed or any(task.done() for task in ingesting):
            await self._stop_ingesting()  # every task restarts together
        await self._step_down(tasks, waiters, stopping=stop.is_set())

    async def _exit_if_crash_looping(self) -> None:
        await exit_if_crash_looping(self.task_health, self.lease, worker=self.worker_id)

    async def _step_down(
        self, tasks: list[asyncio.Task[None]], waiters: list[asyncio.Task[Any]], *, stopping: bool
    ) -> None:
        budget = max(1.0, self.config.shutdown_timeout_s - 2.0)  # leave time to exit
        for task in [*tasks, *waiters]:
            task.cancel()
        await asyncio.gather(*tasks, *waiters, return_exceptions=True)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(budget):
                if stopping:
                    await self._stop_ingesting()  # nothing more to log once flushed
                await self._flush_history()
                if stopping and self.lease.holds():
                    await self.ticker.mirror_now()
                    await self.lease.release()
        self.ingest.history = self.standby_buffer  # standing by again: rows are not ours to log
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
            # the status frame's ingest_lag_s: producer `updated_at` to applied, the largest
            # since the last beat; None when no timestamped input came (a quiet market)
            "ingest_lag_s": self.ingest.lag_since_beat,
        }
        await self.redis.set(self.names.heartbeat, orjson.dumps(beat), px=self.lease.lease_ms)
        self.ingest.lag_since_beat = None

    async def _flush_history(self) -> None:
        try:
            await self.history.flush()
        except NotLeader:  # another worker leads: what we buffered since is not history
            self.lease.lose()

    async def _every(
        self, period: float, step: Callable[[], Awaitable[None]], done: asyncio.Event
    ) -> None:
        while not done.is_set():
            await sleep_unless(done, period)
            try:
                await step()
            except (RedisError, OSError) as exc:
                self._throttled.warning(step.__name__, "periodic step failed", error=str(exc))

    async def _close(self) -> None:
        for backend in self.backends:
            with contextlib.suppress(Exception):
                await backend.aclose()
        await self.redis.aclose()
