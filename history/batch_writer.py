"""The recorder's PostgreSQL side: one connection set up for the batch write, each batch retried.

A `BatchWriter` holds the recorder's psycopg connection (its own, not Django's: statement
timeout and keepalives of its own, the TEMP staging table created once per connection), creates
the day partitions ahead once an hour, and writes a batch through
`history/services.py` `history_rows_write_isolating` until it lands or the recorder is told to
stop. It counts failures; what was written is the recorder's to count (`history/recorder.py`).

`submit` runs that same write on the writer's own thread, one batch at a time, so that the
caller prepares the next batch (Redis read, parse, the Python split: `services.batch_prepare`)
while PostgreSQL works on this one. The connection is used by that thread only.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, date, datetime
from typing import Any, Final

import psycopg

from history import metrics
from history.services import (
    PreparedBatch,
    history_rows_write_isolating,
    partitions_ahead,
    staging_create,
)
from history.stream_rows import StreamRow
from shared.throttled_log import ThrottledLog

log = logging.getLogger("history.recorder")

# Retry delays while PostgreSQL (or, in the recorder's loop, Redis) is unreachable: start fast
# (a blip heals in milliseconds), double, and cap at 2 s so that the backlog starts draining
# within 2 s of its return while an outage costs one connection attempt per 2 s.
BACKOFF_MIN_S: Final = 0.1
BACKOFF_MAX_S: Final = 2.0
CONNECT_TIMEOUT_S: Final = 3
# A 5,000-row batch takes ~50 ms; a statement still running after 5 s means PostgreSQL is stuck.
# Giving up (and retrying) keeps SIGTERM's 10 s exit promise and the once-a-second log line.
_STATEMENT_TIMEOUT_MS: Final = 5000
# Day partitions are created this many days ahead, checked this often: a recorder that runs
# keeps tomorrow's partitions ready (a row outside them still gets its day on demand).
_PARTITIONS_AHEAD_DAYS: Final = 2
_PARTITIONS_CHECK_S: Final = 3600.0

Written = tuple[dict[str, int], list[tuple[StreamRow, str]]]


class BatchWriter:
    """Writes the recorder's batches to PostgreSQL over one connection of its own."""

    def __init__(self, dsn: str, *, throttled: ThrottledLog) -> None:
        self.dsn = dsn
        self._throttled = throttled
        self._conn: psycopg.Connection[Any] | None = None
        self._failing_since: float | None = None
        # The (table, day) partitions known to exist; a new connection starts it afresh.
        self._partitions: set[tuple[str, date]] = set()
        self._next_partitions = 0.0
        self.failures = 0
        self._thread: ThreadPoolExecutor | None = None
        self._busy: Future[Written | None] | None = None
        # Set by `shutdown`: a write retrying after a failure gives up (as on `stop`).
        self._abandon = threading.Event()

    def submit(self, batch: PreparedBatch, stop: threading.Event) -> Future[Written | None]:
        """Start `write(batch, stop)` on the writer's thread; its future gives what it returns.

        One batch at a time: the previous one must be done (the caller waits for it, and
        acknowledges its entries, before handing over the next).
        """
        if self._busy is not None and not self._busy.done():
            raise RuntimeError("the previous batch is still being written")
        if self._thread is None:
            self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="history-write")
        self._busy = self._thread.submit(self.write, batch, stop)
        return self._busy

    @property
    def backend_pid(self) -> int | None:
        """The PostgreSQL backend of the current connection (None: not connected)."""
        conn = self._conn
        return None if conn is None or conn.closed else conn.info.backend_pid

    def write(
        self, rows: Sequence[StreamRow] | PreparedBatch, stop: threading.Event
    ) -> Written | None:
        """Write until it succeeds, or until `stop` is set while PostgreSQL fails (None).

        Returns the rows inserted per type and the rows PostgreSQL refused, with the error.
        """
        delay = BACKOFF_MIN_S
        while True:  # ends on success, or on stop: each failed attempt waits on `stop`
            try:
                conn = self._connection()
                self._partitions_if_due(conn)
                written = history_rows_write_isolating(conn=conn, rows=rows, known=self._partitions)
            except psycopg.Error as exc:
                self.close()
                self.failures += 1
                metrics.WRITE_FAILURES.inc()
                if self._failing_since is None:
                    self._failing_since = time.monotonic()
                self._throttled.warning(
                    "postgres",
                    "cannot write history to PostgreSQL; batch kept, retrying",
                    error=str(exc).strip()[:300],
                    batch=len(rows.rows if isinstance(rows, PreparedBatch) else rows),
                )
                if stop.wait(delay) or self._abandon.is_set():
                    return None
                delay = min(delay * 2, BACKOFF_MAX_S)
                continue
            break
        if self._failing_since is not None:
            log.warning(
                "PostgreSQL writes resumed",
                extra={"failed_for_s": round(time.monotonic() - self._failing_since, 3)},
            )
            self._failing_since = None
        return written

    def _partitions_if_due(self, conn: psycopg.Connection[Any]) -> None:
        now = time.monotonic()
        if now >= self._next_partitions:
            today = datetime.now(UTC).date()
            partitions_ahead(
                conn=conn, today=today, days=_PARTITIONS_AHEAD_DAYS, known=self._partitions
            )
            self._next_partitions = now + _PARTITIONS_CHECK_S

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            conn = psycopg.connect(
                self.dsn,
                connect_timeout=CONNECT_TIMEOUT_S,
                application_name="dashboard-recorder",
                options=f"-c statement_timeout={_STATEMENT_TIMEOUT_MS}",
                # A server that vanished without closing the socket is noticed in ~10 s.
                keepalives=1,
                keepalives_idle=5,
                keepalives_interval=2,
                keepalives_count=2,
            )
            try:
                staging_create(conn=conn)
            except psycopg.Error:
                conn.close()
                raise
            self._conn = conn
            self._partitions = set()
            self._next_partitions = 0.0
        return self._conn

    def shutdown(self) -> None:
        """Stop the writer's thread and close the connection.

        A batch being written is finished; one that failed and waits to retry gives up (it was
        never committed: its entries stay pending), so that this never waits for PostgreSQL.
        """
        self._abandon.set()
        if self._thread is not None:
            self._thread.shutdown(wait=True)
            self._thread = None
        self._busy = None
        self.close()

    def close(self) -> None:
        """Close the connection (the next write opens another)."""
        if self._conn is not None:
            try:
                self._conn.close()
            except psycopg.Error as exc:  # the socket is already gone: nothing left to close
                log.debug("closing a failed connection", extra={"error": str(exc)})
            self._conn = None
