"""Writing the shared snapshot in Redis (design principle 5); `shared/snapshot.py` reads it.

The leader writes the entities that changed since its last write, atomically and fenced (a Lua
script that writes only while the leader key holds the writer's id). A standby taking over, and
every web process, loads it. If the seq key is missing while the leader has state (Redis was
restarted empty), the next write is a full one. Every write also sets the epoch, the name of
the seq lineage (contract 4.1): `epoch` is the writer's, chosen by the worker (`new_epoch()` when
it starts a lineage, the loaded one when it takes a snapshot over).
"""

from __future__ import annotations

import secrets
from typing import Any, Final

import orjson
import redis.asyncio as aioredis

from aggregation.leader import NotLeader
from shared.core.records import ALL_CHANNELS, Channel
from shared.core.state import Changes, Snapshot, TradingState
from shared.keys import RedisNames
from shared.snapshot import WHOLE_FIELD, SnapshotReader

_KEYED: Final = (Channel.MARKET_DATA, Channel.POSITIONS, Channel.STRATEGIES)
_HASH_INDEX: Final = {channel: index for index, channel in enumerate(ALL_CHANNELS, start=4)}

# KEYS: leader, seq, epoch, then the five channel hashes. ARGV: owner, seq, epoch, then (key
# index, field, value) triples; an empty value deletes the field. Returns -1 when not the
# leader, else whether the seq key existed before.
_WRITE: Final = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
    return -1
end
local existed = redis.call('EXISTS', KEYS[2])
for i = 4, #ARGV, 3 do
    local key = KEYS[tonumber(ARGV[i])]
    if ARGV[i + 2] == '' then
        redis.call('HDEL', key, ARGV[i + 1])
    else
        redis.call('HSET', key, ARGV[i + 1], ARGV[i + 2])
    end
end
redis.call('SET', KEYS[2], ARGV[2])
redis.call('SET', KEYS[3], ARGV[3])
return existed
"""


class SharedSnapshot(SnapshotReader):
    """Reads and writes one deployment's shared snapshot (the worker's side)."""

    def __init__(self, client: aioredis.Redis, names: RedisNames) -> None:
        super().__init__(client, names)
        self._keys = [
            names.leader,
            names.seq,
            names.epoch,
            *(names.state(c) for c in ALL_CHANNELS),
        ]
        self._write = client.register_script(_WRITE)
        self.epoch = new_epoch()  # the lineage this writer writes (the worker sets it)

    async def write_changes(self, state: TradingState, changes: Changes, *, owner: str) -> bool:
        """Write the entities `changes` touched; return False if Redis had lost the snapshot."""
        entities = {_entity_of(path) for path in changes}
        if any(key is None and channel in _KEYED for channel, key in entities):
            await self.write_full(state, owner=owner)  # a whole keyed channel changed
            return True
        return await self._write_entities(state, entities, owner=owner)

    async def write_full(self, state: TradingState, *, owner: str) -> None:
        """Write every entity (after Redis lost the snapshot, or on first leadership)."""
        entities: set[tuple[Channel, str | None]] = {
            (Channel.ORDERS, None),
            (Channel.ACCOUNT, None),
        }
        snapshot = state.snapshot(_KEYED)
        for channel in _KEYED:
            entities.update((channel, key) for key in snapshot[channel])
        stale = await self._stale_fields(snapshot)
        entities.update(stale)
        await self._write_entities(state, entities, owner=owner)

    async def _stale_fields(self, snapshot: Snapshot) -> set[tuple[Channel, str | None]]:
        """Fields in Redis that the state no longer has (to delete on a full write)."""
        pipe = self._client.pipeline(transaction=False)
        for channel in _KEYED:
            pipe.hkeys(self._names.state(channel))
        stale: set[tuple[Channel, str | None]] = set()
        for channel, keys in zip(_KEYED, await pipe.execute(), strict=True):
            stale.update((channel, k.decode()) for k in keys if k.decode() not in snapshot[channel])
        return stale

    async def _write_entities(
        self, state: TradingState, entities: set[tuple[Channel, str | None]], *, owner: str
    ) -> bool:
        args: list[Any] = [owner, state.seq, self.epoch]
        for channel, key in entities:
            value = state.entity(channel, key)
            field = key if key is not None else WHOLE_FIELD[channel]
            args += [_HASH_INDEX[channel], field, b"" if value is None else orjson.dumps(value)]
        existed = await self._write(keys=self._keys, args=args)
        if existed == -1:
            raise NotLeader(owner)
        return bool(existed) or state.seq == 0


def new_epoch() -> str:
    """A fresh, random lineage name (contract 4.1: opaque to clients)."""
    return secrets.token_hex(8)


def _entity_of(path: str) -> tuple[Channel, str | None]:
    """The entity a change path belongs to: `market_data.BTC.last_price` -> (market_data, BTC)."""
    parts = path.split(".", 2)
    channel = Channel(parts[0])
    if channel in WHOLE_FIELD or len(parts) == 1:
        return channel, None
    return channel, parts[1]
