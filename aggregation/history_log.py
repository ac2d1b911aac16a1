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
`row_key` is the input's dedupe key (`content_key`), chosen by the writer, not by Redis, and the
same in every worker that ingested the same input: `1-{n}`, `n` 63 bits of a hash of the channel
and the record's exact bytes (its entity key and `updated_at` among them). A batch appended again
after a lost reply (the script ran, its reply never came, the rows stayed buffered) carries the
same keys, and so does a hot standby's copy of a row the leader appended: the recorder inserts
each key once (docs/HISTORY.md, "Exactly once").

The same script also logs the keys it appended, 8 bytes each, into one string per second of the
writer's clock (`RedisNames.history_appended`, kept `standby_buffer_s` plus a margin): a standby
taking over reads them and appends only the rows the old leader had not (aggregation/standby.py).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any, Final

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from aggregation.leader import NotLeader
from shared.core.records import Record

log = logging.getLogger(__name__)

# KEYS: stream, leader, the appended-keys string of this second. ARGV[1]: owner, ARGV[2]:
# capacity, ARGV[3]: the rows' keys (8 bytes each, in row order), ARGV[4]: how long to keep
# them (ms), ARGV[5..]: rows. Returns -1 when not the leader, else how many rows did not fit.
_APPEND: Final = """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then
    return -1
end
local room = tonumber(ARGV[2]) - redis.call('XLEN', KEYS[1])
local added = 0
for i = 5, #ARGV do
    if added >= room then break end
    redis.call('XADD', KEYS[1], '*', 'r', ARGV[i])
    added = added + 1
end
if added > 0 then
    redis.call('APPEND', KEYS[3], string.sub(ARGV[3], 1, 8 * added))
    redis.call('PEXPIRE', KEYS[3], ARGV[4])
end
return (#ARGV - 4) - added
"""
# One script call per batch: bounded so that Redis is never blocked for long by one call.
_MAX_BATCH: Final = 5000
# The writer part of every content key: one id for all workers (history_writer holds it once).
CONTENT_WRITER: Final = 1
_N_MASK: Final = 2**63 - 1  # n is a non-negative bigint
# How many recent keys the log remembers to count repeats (a record with `updated_at` logged
# again byte for byte: the recorder stores it once). A minute and more of a busy desk.
_RECENT_KEYS: Final = 100_000
# The appended-keys strings outlive the standby's buffer by this much (clock skew, flush delay).
APPENDED_MARGIN_S: Final = 5


def content_key(channel: str, record_json: bytes) -> int:
    """The dedupe key's `n` of one accepted change: every worker derives it alike.

    63 bits of BLAKE2b over the channel and the record's JSON (orjson of the stored record:
    the producer's payload, in its field order, nulls dropped), so the entity key, `updated_at`
    and every value are in it. Two byte-identical inputs share it (docs/HISTORY.md).
    """
    digest = hashlib.blake2b(record_json, digest_size=8, person=channel.encode()[:16])
    return int.from_bytes(digest.digest(), "big") & _N_MASK


def row_key(n: int) -> str:
    """The stream entry's `row_key` for content key `n`."""
    return _ROW_KEY_PREFIX + str(n)


_ROW_KEY_PREFIX: Final = f"{CONTENT_WRITER:x}-"


def appended_bucket(now: float) -> int:
    """The second an append at wall-clock `now` logs its keys under."""
    return int(now)


class HistoryLog:
    """Buffers accepted changes and appends them to the history stream."""

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        stream: str,
        capacity: int,
        leader_key: str,
        owner: str,
        appended_key: Callable[[int], str] | None = None,
        keep_appended_s: float = 30.0,
    ) -> None:
        self._client = client
        self.stream = stream
        self.capacity = capacity
        self.leader_key = leader_key
        self.owner = owner
        # `RedisNames.history_appended` (the worker passes it); its spelling by default.
        self._appended_key = appended_key or (lambda second: f"{stream}:appended:{second}")
        self._keep_appended_ms = int((keep_appended_s + APPENDED_MARGIN_S) * 1000)
        self._buffer: list[bytes] = []
        self._keys: list[bytes] = []  # each buffered row's content key, 8 bytes big-endian
        self._recent: OrderedDict[int, None] = OrderedDict()
        self.repeats = 0  # rows the recorder will find stored already (same key, same time)
        self._append = client.register_script(_APPEND)
        self.appended = 0
        self.dropped = 0

    def record(self, channel: str, seq: int, record: Record) -> None:
        """Buffer one accepted change (called for every change; cheap)."""
        if len(self._buffer) >= self.capacity:
            self.dropped += 1
            return
        record_json = orjson.dumps(record)
        n = content_key(channel, record_json)
        row = [channel, seq, time.time(), orjson.Fragment(record_json), row_key(n)]
        self._buffer.append(orjson.dumps(row))  # the record encoded once, for key and row
        self._keys.append(n.to_bytes(8, "big"))
        self._remember(n, repeat_counts="updated_at" in record)

    def _remember(self, n: int, *, repeat_counts: bool) -> None:
        """Count a repeat of a recent key (a row whose `time` is its own `updated_at` only:
        one filed under its receive time is a new row) and remember the key."""
        recent = self._recent
        if n in recent:
            self.repeats += repeat_counts
            recent.move_to_end(n)
            return
        recent[n] = None
        if len(recent) > _RECENT_KEYS:
            recent.popitem(last=False)

    def restore(self, rows: Iterable[tuple[int, str, float, Record]], seq: int) -> int:
        """Put rows another log held (key, channel, received_at, record) before the buffer.

        A standby taking over hands over what the old leader had not appended; they are logged
        at `seq`, the seq at which the new leader's state first holds them. Returns how many.
        """
        entries: list[bytes] = []
        keys: list[bytes] = []
        for n, channel, received_at, record in rows:
            entries.append(orjson.dumps([channel, seq, received_at, record, row_key(n)]))
            keys.append(n.to_bytes(8, "big"))
        room = max(0, self.capacity - len(self._buffer))
        self.dropped += max(0, len(entries) - room)
        self._buffer[:0] = entries[:room]
        self._keys[:0] = keys[:room]
        return min(room, len(entries))

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
            keys = b"".join(self._keys[:_MAX_BATCH])
            bucket = self._appended_key(appended_bucket(time.time()))
            try:
                not_fitted = int(
                    await self._append(
                        keys=[self.stream, self.leader_key, bucket],
                        args=[self.owner, self.capacity, keys, self._keep_appended_ms, *batch],
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
                self._keys.clear()
                self.dropped += dropped + stale
                log.error(
                    "not the leader any more: history rows dropped",
                    extra={"dropped": stale, "owner": self.owner},
                )
                raise NotLeader(self.owner)
            del self._buffer[: len(batch)]
            del self._keys[: len(batch)]
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
        return {
            "appended": self.appended,
            "repeats": self.repeats,
            "dropped": self.dropped,
            "buffered": self.buffered,
        }
