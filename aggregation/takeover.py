"""Standing by and taking over: a hot standby waits for the lease, then leads from its own state.

A standby (aggregation/worker.py `Worker.run`) ingests everything into its own `TradingState`
and waits, `wait_for_lease`, until the leader's lease may be free (its PTTL). Having acquired
it, `Takeover.run` continues from that state past the shared snapshot's seq, in the snapshot's
lineage, and hands the standby buffer's rows nobody appended to the history log
(aggregation/standby.py), so no client state and no history row is lost in the switch.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from typing import Final

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from aggregation import standby
from aggregation.history_log import HistoryLog
from aggregation.ingest import Ingest
from aggregation.leader import LeaderLease
from aggregation.shared_snapshot import SharedSnapshot, new_epoch
from aggregation.standby import StandbyBuffer
from aggregation.ticks import Ticker
from shared.config import Settings
from shared.core.changes import snapshot_diff
from shared.core.state import TradingState
from shared.keys import RedisNames

log = logging.getLogger(__name__)

# A standby tries for the lease again this soon after the leader's lease expires (PTTL).
_ACQUIRE_SLACK_S: Final = 0.005


async def wait_for_lease(
    lease: LeaderLease, *, renew_s: float, stop: asyncio.Event, inputs: list[asyncio.Task[None]]
) -> bool:
    """Wait until the lease may be free (its PTTL, at most a renewal period), `stop` is set or
    an input task ended; return whether one did (the caller restarts them)."""
    try:
        delay = min(renew_s, await lease.expires_in())
    except RedisError:
        delay = renew_s
    waiters = [asyncio.create_task(stop.wait()), *inputs]
    done, _ = await asyncio.wait(
        waiters, timeout=delay + _ACQUIRE_SLACK_S, return_when=asyncio.FIRST_COMPLETED
    )
    waiters[0].cancel()
    return any(task in done for task in inputs)


class Takeover:
    """A worker's switch from standing by to leading (run once per acquired lease)."""

    def __init__(
        self,
        config: Settings,
        *,
        state: TradingState,
        shared: SharedSnapshot,
        ticker: Ticker,
        ingest: Ingest,
        history: HistoryLog,
        standby_buffer: StandbyBuffer,
        redis: aioredis.Redis,
        names: RedisNames,
        worker_id: str,
    ) -> None:
        self._config = config
        self._state = state
        self._shared = shared
        self._ticker = ticker
        self._ingest = ingest
        self._history = history
        self._standby_buffer = standby_buffer
        self._redis = redis
        self._names = names
        self._worker_id = worker_id

    async def run(self) -> None:
        """Continue from this worker's own state, past the shared snapshot, losing no history.

        The shared snapshot (seq S) is what the web processes and their clients hold: the state
        rebases onto it (`TradingState.rebase`), so every cadence's next update brings a client
        at S to this state exactly, at a seq past S. Then the history log takes over from the
        standby buffer, first with the rows no leader appended (aggregation/standby.py).
        """
        state = self._state
        snapshot, seq, epoch = await self._shared.load()
        if seq == 0:
            self._ticker.full_mirror = True  # nothing in Redis (first start, or Redis lost it)
            # Redis holds no snapshot: a first start, or a Redis restart without
            # persistence. Another worker may have led since our state was current, and
            # clients may have seen its seqs, so start past any seq that can exist: the
            # wall clock in microseconds (always ahead of a seq that began at such a floor
            # and grew by fewer than a million changes a second; below 2**53, so exact in
            # JavaScript). Every cadence restarts there, so every client resyncs once.
            floor = time.time_ns() // 1000
            state.load(state.snapshot(), seq=max(state.seq, floor))
            self._shared.epoch = new_epoch()  # a new lineage (contract 4.1)
            changed = 0
        else:
            changes = snapshot_diff(snapshot, state.snapshot())
            state.rebase(seq, changes)
            # The rebase continues the lineage exactly: clients at S apply our next update.
            self._shared.epoch = epoch or new_epoch()
            changed = len(changes)
        self._ingest.lag_since_beat = None  # what a standby saw is not the leader's lag
        # No await since the rebase: nothing was ingested between it and the switch.
        rows = self._standby_buffer.take()
        self._ingest.history = self._history
        try:
            appended = await standby.appended_keys(
                self._redis, self._names, window_s=self._config.standby_buffer_s
            )
        except RedisError as exc:  # hand every row over: the recorder's key dedupes the rest
            log.warning("cannot read what the old leader appended", extra={"error": str(exc)})
            appended = set()
        missed = standby.unappended(rows, appended)
        restored = self._history.restore(missed, seq=state.seq)
        log.info(
            "took over",
            extra={
                "worker": self._worker_id,
                "shared_seq": seq,
                "seq": state.seq,
                "entities_changed": changed,
                "standby_rows": len(rows),
                "rows_restored": restored,
                "restored_by_channel": dict(Counter(row[1] for row in missed[:restored])),
            },
        )
