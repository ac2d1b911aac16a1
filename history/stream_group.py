"""The recorder's side of the history stream: one Redis consumer group, read, ack and trim.

The worker refuses to append past `history_stream_maxlen` entries counted by XLEN, so the
stream must hold only what is not yet in PostgreSQL: after every acknowledged batch the stream is
trimmed (exactly, not `~`) up to the oldest entry the group still needs.
"""

from __future__ import annotations

from typing import Any, Final

import redis
from redis.exceptions import ResponseError

GROUP: Final = "recorder"

Entry = tuple[bytes, dict[bytes, bytes]]


def _next_id(entry_id: bytes) -> str:
    """The smallest stream id after `entry_id`."""
    ms, _, seq = entry_id.decode().partition("-")
    return f"{ms}-{int(seq) + 1}"


def _id_key(entry_id: bytes | str) -> tuple[int, int]:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


class StreamGroup:
    """The `recorder` consumer group of one history stream, seen by one consumer."""

    def __init__(self, client: redis.Redis, *, stream: str, consumer: str) -> None:
        self.client = client
        self.stream = stream
        self.consumer = consumer

    def ensure(self) -> None:
        """Create the stream and the group if missing (from id 0: nothing appended is skipped)."""
        try:
            self.client.xgroup_create(self.stream, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def leave(self) -> bool:
        """Leave the group unless entries are pending for this consumer; whether it left.

        Called on a clean stop, so that readiness does not take a recorder that stopped on
        purpose for a dead one. A consumer with pending entries stays: deleting it would drop
        them from the group's pending list, and no other recorder could claim them.
        """
        for consumer in self.client.xinfo_consumers(self.stream, GROUP):
            if consumer["name"].decode() == self.consumer:
                if consumer["pending"]:
                    return False
                self.client.xgroup_delconsumer(self.stream, GROUP, self.consumer)
                return True
        return False

    def read(self, *, count: int, block_ms: int | None) -> list[Entry]:
        """New entries for this consumer, waiting up to `block_ms` for some (None: no wait)."""
        try:
            reply: Any = self.client.xreadgroup(
                GROUP, self.consumer, {self.stream: ">"}, count=count, block=block_ms
            )
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            self.ensure()  # the stream vanished (Redis restarted empty, or FLUSHDB)
            return []
        # RESP2 reply: [[stream, [(id, fields), ...]]]
        return list(reply[0][1]) if reply else []

    def claim(self, *, min_idle_ms: int, count: int) -> list[Entry]:
        """Take over up to `count` entries another (dead) consumer left pending that long."""
        try:
            reply: Any = self.client.xautoclaim(
                self.stream, GROUP, self.consumer, min_idle_ms, "0-0", count=count
            )
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            self.ensure()
            return []
        return [(entry_id, fields) for entry_id, fields in reply[1] if fields is not None]

    def ack(self, ids: list[bytes]) -> None:
        """Acknowledge entries that are now in PostgreSQL (or were malformed)."""
        if ids:
            self.client.xack(self.stream, GROUP, *ids)

    def trim(self) -> int:
        """Delete every entry the group has acknowledged; return how many were deleted."""
        with self.client.pipeline(transaction=True) as pipe:
            # One MULTI: the last delivered id and the pending list describe the same moment.
            pipe.xinfo_groups(self.stream)
            pipe.xpending(self.stream, GROUP)
            groups, pending = pipe.execute()
        group = next((g for g in groups if g["name"] == GROUP.encode()), None)
        if group is None or group["last-delivered-id"] in (b"0-0", "0-0"):
            return 0
        cut = _next_id(group["last-delivered-id"])
        if pending["pending"]:
            cut = min(cut, pending["min"].decode(), key=_id_key)
        return int(self.client.xtrim(self.stream, minid=cut, approximate=False))

    def pending(self) -> int:
        """Entries delivered to some consumer and not acknowledged yet."""
        return int(self.client.xpending(self.stream, GROUP)["pending"])

    def backlog(self) -> tuple[int, int | None]:
        """Entries not yet recorded (XLEN), and the oldest one's time in epoch ms (or None)."""
        with self.client.pipeline(transaction=False) as pipe:
            pipe.xlen(self.stream)
            pipe.xrange(self.stream, "-", "+", count=1)
            length, first = pipe.execute()
        return int(length), (_id_key(first[0][0])[0] if first else None)

    def reap_consumers(self, *, idle_ms: int) -> int:
        """Remove consumers with nothing pending and idle that long (dead recorders' names)."""
        reaped = 0
        for consumer in self.client.xinfo_consumers(self.stream, GROUP):
            name = consumer["name"].decode()
            if name != self.consumer and not consumer["pending"] and consumer["idle"] > idle_ms:
                self.client.xgroup_delconsumer(self.stream, GROUP, name)
                reaped += 1
        return reaped
