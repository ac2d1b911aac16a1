"""The recorder: moves the worker's history stream into PostgreSQL, exactly once in effect.

Loop: read a batch with XREADGROUP (or first reclaim entries a dead recorder left pending, with
XAUTOCLAIM), parse it, write it in one transaction (COPY into a staging table, then one
INSERT ... SELECT per table of the rows whose key is not stored), then XACK, then trim the
stream to what is still needed. Batches overlap: the next batch is read and prepared while the
writer's thread writes this one (`step`). A crash anywhere before the XACK means the entries
are delivered again and the replay inserts nothing new; a malformed entry is counted, logged
and acked, never retried.

While PostgreSQL is unreachable the batch is not acked and is retried with capped backoff; the
stream keeps absorbing the worker's appends (up to `history_stream_maxlen`) and everything is
written when PostgreSQL is back. It runs as its own process (`manage.py run_recorder`) so that
COPY, JSON and connection work never shares a core or an event loop with the worker's ingest.
The PostgreSQL side (its connection, the partitions ahead, the retried write) is
`history/batch_writer.py`; this module is the loop and its accounting.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Final

from redis.exceptions import RedisError

from history import metrics
from history.batch_writer import (
    BACKOFF_MAX_S,
    BACKOFF_MIN_S,
    CONNECT_TIMEOUT_S,
    BatchWriter,
    Written,
)
from history.services import PreparedBatch, batch_prepare
from history.stream_group import Entry, StreamGroup
from history.stream_rows import Malformed, StreamRow, parse_entry
from shared import redis_clients
from shared.config import Settings
from shared.keys import RedisNames
from shared.process_id import process_id
from shared.redis_clients import RedisTarget
from shared.throttled_log import ThrottledLog

log = logging.getLogger("history.recorder")

# A recurring failure is logged once per this many seconds, with the count held back.
_FAILURE_LOG_INTERVAL_S: Final = 10.0
_REPORT_INTERVAL_S: Final = 1.0


@dataclass(frozen=True, slots=True)
class RecorderOptions:
    """What one recorder needs to know; `from_config` reads it from the product's settings."""

    redis: RedisTarget
    stream: str
    dsn: str
    batch_size: int
    block_ms: int
    claim_idle_s: float

    @classmethod
    def from_config(cls, config: Settings, *, dsn: str | None = None) -> RecorderOptions:
        """The options of the deployment described by `config`."""
        return cls(
            redis=RedisTarget.from_settings(config),
            stream=RedisNames(config.redis_key_prefix).history_stream,
            dsn=dsn or str(config.database_url),
            batch_size=config.history_batch_size,
            block_ms=config.history_read_block_ms,
            claim_idle_s=config.history_claim_idle_s,
        )


class Recorder:
    """One consumer of the history stream's `recorder` group, writing to PostgreSQL."""

    def __init__(self, options: RecorderOptions, *, consumer: str | None = None) -> None:
        self.options = options
        self.consumer = consumer or process_id()
        # The socket timeout must outlast a blocking XREADGROUP.
        self.redis = redis_clients.sync_client(
            options.redis,
            socket_timeout=options.block_ms / 1000 + 5,
            socket_connect_timeout=CONNECT_TIMEOUT_S,
        )
        self.group = StreamGroup(self.redis, stream=options.stream, consumer=self.consumer)
        self._throttled = ThrottledLog(log, interval_s=_FAILURE_LOG_INTERVAL_S)
        self.writer = BatchWriter(options.dsn, throttled=self._throttled)
        # The batch the writer's thread is writing, and its entries (acked once it committed).
        self._inflight: tuple[list[Entry], Future[Written | None]] | None = None
        self._group_ready = False
        self._next_claim = 0.0
        self._next_report = time.monotonic() + _REPORT_INTERVAL_S
        self.written: Counter[str] = Counter()
        self.malformed: Counter[str] = Counter()
        self.batches = 0
        self.claimed = 0
        self._reported: dict[str, Any] = self._totals()

    # --- the loop ----------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Record until `stop` is set; the batch in hand is finished first (if PostgreSQL is up)."""
        log.info(
            "recorder started", extra={"consumer": self.consumer, "stream": self.options.stream}
        )
        backoff = BACKOFF_MIN_S
        try:
            while not stop.is_set():
                try:
                    self.step(stop)
                    backoff = BACKOFF_MIN_S
                except RedisError as exc:
                    self._group_ready = False
                    self._throttled.warning("redis", "cannot reach Redis", error=str(exc))
                    stop.wait(backoff)
                    backoff = min(backoff * 2, BACKOFF_MAX_S)
                self.report_if_due()
        finally:
            if not stop.is_set():  # leaving on an error: a write retrying must not hold us
                self.writer.shutdown()
            self._finish_inflight()
            self.report_if_due(force=True)
            self._leave_group()
            self.close()
            log.info("recorder stopped", extra={"consumer": self.consumer, **self._totals()})

    def step(self, stop: threading.Event) -> int:
        """Record what the stream holds now, batch after batch; return the entries acknowledged.

        Waits up to `history_read_block_ms` for a first batch, then goes on while more are
        there at once. Batches overlap: batch k+1 is read, parsed and split in Python while
        the writer's thread has PostgreSQL write batch k; k+1 is handed over once k is
        committed and acknowledged. So at most two batches are held, entries are acknowledged
        only after their batch committed, in order, and a crash anywhere leaves the unacked
        ones pending (reclaimed and replayed: the replay inserts nothing). Nothing is in
        flight when it returns.
        """
        if not self._group_ready:
            self.group.ensure()
            self._group_ready = True
        handled = 0
        entries = self._entries(block=self._inflight is None)
        while entries:
            batch = self._prepare(entries)  # overlaps the write of the batch in flight
            done = self._finish()
            if done is None:
                return handled  # stopping while PostgreSQL is down: left pending, reclaimed later
            handled += done
            if batch is None:  # nothing to write (malformed entries only)
                self._ack([entry_id for entry_id, _ in entries])
                handled += len(entries)
            else:
                self._inflight = (entries, self.writer.submit(batch, stop))
            if stop.is_set():
                break
            self.report_if_due()
            entries = self._entries(block=False)
        done = self._finish()
        return handled + (done or 0)

    def _entries(self, *, block: bool) -> list[Entry]:
        """Entries to reclaim if due, else new ones (waiting for them only if `block`)."""
        entries = self._claim_if_due()
        if not entries:
            block_ms = self.options.block_ms if block else None
            entries = self.group.read(count=self.options.batch_size, block_ms=block_ms)
        return entries

    def _prepare(self, entries: list[Entry]) -> PreparedBatch | None:
        """Parse the entries (malformed ones counted) and split the rows; None: no rows."""
        rows: list[StreamRow] = []
        for entry_id, fields in entries:
            parsed = parse_entry(entry_id, fields)
            if isinstance(parsed, Malformed):
                self._count_malformed(parsed.entry_id, parsed.reason)
            else:
                rows.append(parsed)
        return batch_prepare(rows) if rows else None

    def _finish(self) -> int | None:
        """Wait for the batch in flight; once committed, count, ack and trim it.

        Returns its entries acknowledged (0: none in flight), or None when the writer gave
        up (stopping while PostgreSQL fails): the entries stay pending.
        """
        if self._inflight is None:
            return 0
        entries, future = self._inflight
        self._inflight = None
        written = future.result()
        if written is None:
            return None
        self._account(written)
        self._ack([entry_id for entry_id, _ in entries])
        return len(entries)

    def _ack(self, ids: list[bytes]) -> None:
        self.group.ack(ids)
        self.group.trim()

    def _claim_if_due(self) -> list[tuple[bytes, dict[bytes, bytes]]]:
        now = time.monotonic()
        if now < self._next_claim:
            return []
        idle_ms = int(self.options.claim_idle_s * 1000)
        entries = self.group.claim(min_idle_ms=idle_ms, count=self.options.batch_size)
        if entries:
            self.claimed += len(entries)
            log.info("reclaimed pending entries", extra={"entries": len(entries)})
        else:  # nothing left to take over: look again in half the idle time
            self._next_claim = now + self.options.claim_idle_s / 2
            self.group.reap_consumers(idle_ms=idle_ms)
        return entries

    # --- PostgreSQL (history/batch_writer.py) -------------------------------------------------

    def _account(self, written: Written) -> None:
        """Count a committed batch: rows inserted per type, rows PostgreSQL refused."""
        inserted, refused = written
        for row, error in refused:
            self._count_malformed(row.entry_id, "refused_by_database", error=error)
        for channel, n in inserted.items():
            self.written[channel] += n
            metrics.ROWS_WRITTEN.labels(channel).inc(n)
        self.batches += 1
        metrics.BATCHES.inc()

    @property
    def write_failures(self) -> int:
        """Failed attempts to write a batch since start (each retried)."""
        return self.writer.failures

    def _finish_inflight(self) -> None:
        """On the way out: the batch in flight committed (or given up) and, if it was, acked."""
        try:
            self._finish()
        except RedisError as exc:  # committed, not acked: pending, replayed (inserting nothing)
            log.warning("could not acknowledge the last batch", extra={"error": str(exc)})

    def _leave_group(self) -> None:
        try:
            self.group.leave()
        except RedisError as exc:  # Redis is away: readiness will call this recorder dead
            log.warning("could not leave the recorder group", extra={"error": str(exc)})

    def close(self) -> None:
        """Close both connections (a batch being written is finished first, not acked)."""
        self.writer.shutdown()
        self.redis.close()

    # --- accounting ----------------------------------------------------------------------------

    def _count_malformed(self, entry_id: str, reason: str, **fields: Any) -> None:
        self.malformed[reason] += 1
        metrics.ROWS_MALFORMED.labels(reason).inc()
        self._throttled.warning(
            f"malformed:{reason}",
            "history entry not recordable; acked",
            entry=entry_id,
            reason=reason,
            **fields,
        )

    def _totals(self) -> dict[str, Any]:
        return {
            "written": dict(self.written),
            "malformed": dict(self.malformed),
            "batches": self.batches,
            "claimed": self.claimed,
            "write_failures": self.write_failures,
        }

    def report_if_due(self, *, force: bool = False) -> None:
        """Log the counts of the last interval as one JSON line (at most once a second)."""
        now = time.monotonic()
        if not force and now < self._next_report:
            return
        self._next_report = now + _REPORT_INTERVAL_S
        backlog: int | None = None
        pending: int | None = None
        lag_s: float | None = None
        try:
            backlog, oldest_ms = self.group.backlog()
            pending = self.group.pending() if self._group_ready else 0
            lag_s = max(0.0, time.time() - oldest_ms / 1000) if oldest_ms else 0.0
            metrics.BACKLOG.set(backlog)
            metrics.LAG.set(lag_s)
        except RedisError:
            pass  # the loop itself reports Redis being unreachable
        totals = self._totals()
        previous, self._reported = self._reported, totals
        written = Counter(totals["written"]) - Counter(previous["written"])
        log.info(
            "recorder stats",
            extra={
                "event": "recorder.stats",
                "rows_written": dict(written),
                "rows": sum(written.values()),
                "batches": totals["batches"] - previous["batches"],
                "malformed": sum(totals["malformed"].values())
                - sum(previous["malformed"].values()),
                "write_failures": totals["write_failures"] - previous["write_failures"],
                "backlog": backlog,
                "pending": pending,
                "lag_s": None if lag_s is None else round(lag_s, 3),
                "totals": totals,
            },
        )
