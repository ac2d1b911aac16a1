"""The worker's output: on every cadence tick, the shared snapshot and then the update.

Each tick takes the mirror's diff and the cadence's diff from the state together, writes
the former to the shared snapshot in Redis (so a web process or a standby can load it at that
seq) and then sends the cadence's update, encoded once per format, to the cadence's group.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter as Tally
from typing import Any, Final

from redis.exceptions import RedisError

from aggregation import metrics
from aggregation.broadcast import update_event
from aggregation.leader import LeaderLease, NotLeader
from aggregation.shared_snapshot import SharedSnapshot, new_epoch
from shared.cadences import interval_ms
from shared.channel_layer import ChannelLayer
from shared.config import Settings
from shared.core.state import TradingState
from shared.keys import RedisNames
from shared.throttled_log import ThrottledLog

log = logging.getLogger(__name__)

MIRROR: Final = "mirror"  # the state's third cadence: what the shared snapshot has not seen


class Ticker:
    """Sends each cadence's updates and keeps the shared snapshot up to date."""

    def __init__(
        self,
        config: Settings,
        *,
        state: TradingState,
        lease: LeaderLease,
        shared: SharedSnapshot,
        layer: ChannelLayer,
        names: RedisNames,
        throttled: ThrottledLog,
        owner: str,
    ) -> None:
        self._config = config
        self._state = state
        self._lease = lease
        self._shared = shared
        self._layer = layer
        self._names = names
        self._throttled = throttled
        self._owner = owner
        self._tick_lock = asyncio.Lock()
        self.full_mirror = False  # the next mirror write rewrites every entity
        self.broadcasts: Tally[str] = Tally()  # updates sent since the last stats line

    async def run(self, cadence: str, done: asyncio.Event) -> None:
        """Tick `cadence` at its interval until `done` is set or the lease is lost."""
        interval = interval_ms(self._config, cadence) / 1000
        loop = asyncio.get_running_loop()
        deadline = loop.time()
        while not done.is_set():
            deadline += interval
            delay = deadline - loop.time()
            if delay < -interval:  # fell far behind (a stall): realign, do not burst
                deadline = loop.time()
            await asyncio.sleep(max(0.0, delay))
            try:
                await self.tick(cadence)
            except (RedisError, OSError) as exc:
                # The update is lost for this tick; consumers see the gap and resync.
                self._throttled.warning(f"tick-{cadence}", "broadcast failed", error=str(exc))
            except NotLeader:
                self._lease.lose()
                return

    async def tick(self, cadence: str) -> None:
        """Write the shared snapshot up to now, then send the cadence's update at that seq."""
        if not self._lease.holds():  # fencing: never broadcast without a lease we are sure of
            return
        async with self._tick_lock:  # writes and sends leave in seq order
            started = time.perf_counter()
            mirror = self._state.take_diff(MIRROR)  # taken together: the update's seq is mirrored
            update = self._state.take_diff(cadence)
            await self._write_mirror(mirror.changes)
            if not update.changes:
                return
            await self._layer.group_send(
                self._names.group(cadence), update_event(cadence, update, epoch=self._shared.epoch)
            )
            self.broadcasts[cadence] += 1
            metrics.TICK_DURATION.labels(cadence).observe(time.perf_counter() - started)

    async def mirror_now(self) -> None:
        """Write what the shared snapshot has not seen yet (before stepping down)."""
        async with self._tick_lock:
            await self._write_mirror(self._state.take_diff(MIRROR).changes)

    async def _write_mirror(self, changes: dict[str, Any]) -> None:
        if self.full_mirror:
            await self._shared.write_full(self._state, owner=self._owner)
            self.full_mirror = False
        elif changes and not await self._shared.write_changes(
            self._state, changes, owner=self._owner
        ):
            # Redis restarted empty. Clients may have missed updates while it was away, so
            # start a new interval one seq further: every client sees a base past its position
            # and resyncs from a fresh snapshot (contract section 8). Nobody can vouch for the
            # seqs in between any more: a new lineage (contract 4.1), so no client resumes
            # across it.
            log.warning("shared snapshot was missing in Redis; rewriting it and resyncing")
            self._shared.epoch = new_epoch()
            self._state.load(self._state.snapshot(), seq=self._state.seq + 1)
            await self._shared.write_full(self._state, owner=self._owner)
