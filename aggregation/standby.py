"""The hot standby's history: the rows it would have logged, and which of them nobody appended.

A standby ingests everything the leader ingests into its own state (aggregation/worker.py), but
appends nothing to the history stream: it keeps the rows of the last `standby_buffer_s`
seconds (at most `standby_buffer_rows`) here instead. On taking over it reads the content keys
the old leader appended in that window (`HistoryLog` logs them beside each append) and hands
the rows whose key is not among them to its own history log: what was published while nobody
led, and what the old leader had buffered but not flushed when it died. Every worker derives a
row's key from the input itself (`content_key`), so a row both workers logged has one key, and
the recorder would insert it once even if the comparison missed it (docs/HISTORY.md).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator

import orjson
import redis.asyncio as aioredis

from aggregation.history_log import APPENDED_MARGIN_S, appended_bucket, content_key
from shared.core.records import Record
from shared.keys import RedisNames

# A buffered row: (monotonic time, content key, channel, received_at, record).
_Row = tuple[float, int, str, float, Record]
# What a history log takes over: (content key, channel, received_at, record).
HandedRow = tuple[int, str, float, Record]


class StandbyBuffer:
    """The history rows of the last `window_s` seconds, at most `max_rows` (oldest dropped)."""

    def __init__(
        self,
        *,
        window_s: float,
        max_rows: int,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.window_s = window_s
        self._rows: deque[_Row] = deque(maxlen=max_rows)
        self._clock = clock
        self._wall_clock = wall_clock

    def record(self, channel: str, seq: int, record: Record) -> None:
        """Keep one accepted change (the `HistoryLog.record` signature; `seq` is not kept)."""
        now = self._clock()
        n = content_key(channel, orjson.dumps(record))
        self._rows.append((now, n, channel, self._wall_clock(), record))
        self._expire(now)

    def __len__(self) -> int:
        self._expire(self._clock())
        return len(self._rows)

    def rows(self) -> Iterator[HandedRow]:
        """The rows still inside the window, oldest first."""
        self._expire(self._clock())
        for _, n, channel, received_at, record in self._rows:
            yield n, channel, received_at, record

    def take(self) -> list[HandedRow]:
        """Every row inside the window, oldest first, and empty the buffer."""
        rows = list(self.rows())
        self._rows.clear()
        return rows

    def _expire(self, now: float) -> None:
        rows = self._rows
        cutoff = now - self.window_s
        while rows and rows[0][0] < cutoff:
            rows.popleft()


async def appended_keys(
    client: aioredis.Redis, names: RedisNames, *, window_s: float, now: float | None = None
) -> set[int]:
    """The content keys any leader appended within the last `window_s` (plus the margin)."""
    now = time.time() if now is None else now
    first = appended_bucket(now - window_s - APPENDED_MARGIN_S)
    last = appended_bucket(now + APPENDED_MARGIN_S)
    values = await client.mget([names.history_appended(s) for s in range(first, last + 1)])
    keys: set[int] = set()
    for value in values:
        if isinstance(value, bytes):
            keys.update(
                int.from_bytes(value[i : i + 8], "big") for i in range(0, len(value) - 7, 8)
            )
    return keys


def unappended(rows: list[HandedRow], appended: set[int]) -> list[HandedRow]:
    """The rows whose key no leader appended, in order (as the leader would have logged them)."""
    return [row for row in rows if row[0] not in appended]
