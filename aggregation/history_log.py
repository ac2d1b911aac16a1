"""The history log: every accepted change appended to a Redis Stream, off the hot path.

Changes are buffered in memory and appended in batches by a Lua script that adds at most as many
entries as the stream has room for (`history_stream_maxlen`, counted in unrecorded rows: the
recorder trims what it has written). What does not fit is dropped — counted and logged, never
silent (contract section 8). While Redis is unreachable the buffer holds the rows, up to the same
capacity, and the next flush appends them.

Each entry has one field `r`: the JSON array `[channel, seq, received_at, record]`.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Final

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from aggregation.core.records import Record

log = logging.getLogger(__name__)

# ARGV[1]: capacity; ARGV[2..]: rows. Returns how many rows did not fit.
_APPEND: Final = """
local room = tonumber(ARGV[1]) - redis.call('XLEN', KEYS[1])
local added = 0
for i = 2, #ARGV do
    if added >= room then break end
    redis.call('XADD', KEYS[1], '*', 'r', ARGV[i])
    added = added + 1
end
return (#ARGV - 1) - added
"""
# One script call per batch: bounded so that Redis is never blocked for long by one call.
_MAX_BATCH: Final = 5000


class HistoryLog:
    """Buffers accepted changes and appends them to the history stream."""

    def __init__(self, client: aioredis.Redis, *, stream: str, capacity: int) -> None:
        self._client = client
        self.stream = stream
        self.capacity = capacity
        self._buffer: list[bytes] = []
        self._append = client.register_script(_APPEND)
        self.appended = 0
        self.dropped = 0

    def record(self, channel: str, seq: int, record: Record) -> None:
        """Buffer one accepted change (called for every change; cheap)."""
        if len(self._buffer) >= self.capacity:
            self.dropped += 1
            return
        self._buffer.append(orjson.dumps([channel, seq, time.time(), record]))

    @property
    def buffered(self) -> int:
        """Rows waiting in memory for the next flush."""
        return len(self._buffer)

    async def flush(self) -> int:
        """Append the buffered rows; return how many were dropped for lack of room."""
        dropped = 0
        while self._buffer:
            batch = self._buffer[:_MAX_BATCH]
            try:
                not_fitted = int(
                    await self._append(keys=[self.stream], args=[self.capacity, *batch])
                )
            except RedisError as exc:
                log.warning(
                    "history append failed; rows kept in memory",
                    extra={"error": str(exc), "buffered": len(self._buffer)},
                )
                break
            del self._buffer[: len(batch)]
            self.appended += len(batch) - not_fitted
            dropped += not_fitted
        if dropped:
            self.dropped += dropped
            log.error(
                "history stream full: rows dropped",
                extra={"dropped": dropped, "capacity": self.capacity},
            )
        return dropped

    def stats(self) -> dict[str, Any]:
        """Counts for the periodic log line."""
        return {"appended": self.appended, "dropped": self.dropped, "buffered": self.buffered}
