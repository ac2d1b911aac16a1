"""Reading the shared snapshot in Redis: one hash per channel plus the seq (design principle 5).

The worker's leader writes it (`aggregation/shared_snapshot.py`); a standby taking over, and
every web process, reads it here. Unkeyed channels (orders, account) live in one field of their
hash; keyed channels hold one field per entity. Beside the seq is the epoch: the name of the
seq lineage (contract 4.1), written in the same fenced write as the seq.
"""

from __future__ import annotations

from typing import Any, Final, NamedTuple

import orjson
import redis.asyncio as aioredis

from shared.core.records import ALL_CHANNELS, Channel
from shared.core.state import Snapshot
from shared.keys import RedisNames

# Unkeyed channels live in one field of their hash.
WHOLE_FIELD: Final = {Channel.ORDERS: "list", Channel.ACCOUNT: "record"}


class SharedState(NamedTuple):
    """The shared snapshot as loaded: its data, seq and epoch ("" when Redis holds none)."""

    data: Snapshot
    seq: int
    epoch: str


class SnapshotReader:
    """Reads one deployment's shared snapshot."""

    def __init__(self, client: aioredis.Redis, names: RedisNames) -> None:
        self._client = client
        self._names = names

    async def load(self) -> SharedState:
        """Read the snapshot, its seq and epoch in one transaction; (empty, 0, "") if none."""
        pipe = self._client.pipeline(transaction=True)
        pipe.get(self._names.seq)
        pipe.get(self._names.epoch)
        for channel in ALL_CHANNELS:
            pipe.hgetall(self._names.state(channel))
        seq_raw, epoch_raw, *hashes = await pipe.execute()
        snapshot: Snapshot = {}
        for channel, fields in zip(ALL_CHANNELS, hashes, strict=True):
            decoded = {k.decode(): orjson.loads(v) for k, v in fields.items()}
            if channel in WHOLE_FIELD:
                default: Any = [] if channel is Channel.ORDERS else {}
                snapshot[channel.value] = decoded.get(WHOLE_FIELD[channel], default)
            else:
                snapshot[channel.value] = decoded  # plain str keys: JSON encoders need them
        return SharedState(snapshot, int(seq_raw or 0), epoch_raw.decode() if epoch_raw else "")
