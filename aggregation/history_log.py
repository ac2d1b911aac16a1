"""The history log: every accepted change appended to a Redis Stream, off the hot path.

Changes are buffered in memory and appended in batches by a Lua script that adds at most as many
entries as the stream has room for (`history_stream_maxlen`, counted in unrecorded rows: the
recorder trims what it has written). What does not fit is dropped — counted and logged, never
silent (contract section 8). While Redis is unreachable the buffer holds the rows, up to the same
capacity, and the next flush appends them.

The append is fenced like the shared snapshot: the script appends only while the leader key
holds the writer's id, checked in the same call. A stale leader (its lease expired during a stall
and another worker leads) would otherwise log changes the new leader's state never had, with
seqs the new leader reuses; its buffered rows are dropped, counted, and `NotLeader` raised.

Each entry has one field `r`: the JSON array `[channel, seq, received_at, record, row_key]`.
`row_key` (`{writer}-{n}`: a random id of this log, then a counter) is chosen by the writer, not
by Redis, so that a batch appended again after a lost reply (the script ran, its reply never
came, the rows stayed buffered) carries the same keys, and the recorder inserts each row once.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any, Final

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from aggregation.leader import NotLeader
from shared.core.records import Record

log = logging.getLogger(__name__)

# KEYS: stream, leader. ARGV[1]: owner, ARGV[2]: capacity, ARGV[3..]: rows. Returns -1 when
# not the leader, else how many rows did not fit.
_APPEND: Final = """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then
    return -1
end
local room = tonumber(ARGV[2]) - redis.call('XLEN', KEYS[1])
local added = 0
for i = 3, #ARGV do
    if added >= room then break end
    redis.call('XADD', KEYS[1], '*', 'r', ARGV[i])
    added = added + 1
end
return (#ARGV - 2) - added
"""
# One script call per batch: bounded so that Redis is never blocked for long by one call.
_MAX_BATCH: Final = 5000


class HistoryLog:
    """Buffers accepted changes and appends them to the history stream."""

    def __init__(
        self, client: aioredis.Redis, *, stream: str, capacity: int, leader_key: str, owner: str
    ) -> None:
        self._client = client
        self.stream = stream
        self.capacity = capacity
        self.leader_key = leader_key
        self.owner = owner
        self.writer = uuid.uuid4().hex[:16]  # 64 random bits: no two logs share row keys
        self._rows = 0
        self._buffer: list[bytes] = []
        self._append = client.register_script(_APPEND)
        self.appended = 0
        self.dropped = 0

    def record(self, channel: str, seq: int, record: Record) -> None:
        """Buffer one accepted change (called for every change; cheap)."""
        if len(self._buffer) >= self.capacity:
            self.dropped += 1
            return
        self._rows += 1
        row_key = f"{self.writer}-{self._rows}"
        self._buffer.append(orjson.dumps([channel, seq, time.time(), record, row_key]))

    @property
    def buffered(self) -> int:
        """Rows waiting in memory for the next flush."""
        return len(self._buffer)

    async def flush(self) -> int:
        """Append the buffered rows; return how many were dropped for lack of room.

        Raises `NotLeader` (the buffer dropped) if another worker holds the lease.
        """
        dropped = 0
        while self._buffer:
            batch = self._buffer[:_MAX_BATCH]
            try:
                not_fitted = int(
                    await self._append(
                        keys=[self.stream, self.leader_key],
                        args=[self.owner, self.capacity, *batch],
                    )
                )
            except RedisError as exc:
                log.warning(
                    "history append failed; rows kept in memory",
                    extra={"error": str(exc), "buffered": len(self._buffer)},
                )
                break
            if not_fitted == -1:
                stale = len(self._buffer)
                self._buffer.clear()
                self.dropped += dropped + stale
                log.error(
                    "not the leader any more: history rows dropped",
                    extra={"dropped": stale, "owner": self.owner},
                )
                raise NotLeader(self.owner)
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
