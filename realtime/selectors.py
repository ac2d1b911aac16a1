"""Reads for the HTTP API of the web process: the shared snapshot and the presence list."""

from __future__ import annotations

from typing import Any, TypedDict

import redis.asyncio as aioredis

from realtime.presence import list_clients
from realtime.protocol import Subscription, filter_snapshot
from shared import redis_clients
from shared.clock import rfc3339_now
from shared.config import Settings
from shared.keys import RedisNames
from shared.snapshot import SharedState, SnapshotReader


class StateDump(TypedDict):
    """The `/debug` body: the whole state with when, at which seq, and how much."""

    timestamp: str
    sequence: int
    counts: dict[str, int]
    data: dict[str, Any]


def _client(config: Settings) -> aioredis.Redis:
    return redis_clients.async_client(config, socket_timeout=5, socket_connect_timeout=2)


async def state_snapshot(*, config: Settings) -> SharedState:
    """The shared snapshot's data (contract 4's snapshot `data`), its seq and epoch."""
    client = _client(config)
    try:
        names = RedisNames(config.redis_key_prefix, config.input_prefix)
        return await SnapshotReader(client, names).load()
    finally:
        await client.aclose()


async def state_dump(*, config: Settings, scope: Subscription | None = None) -> StateDump:
    """The shared snapshot (what `scope` takes; None: all) with a timestamp, its seq and the
    entity count per channel."""
    data, seq, _epoch = await state_snapshot(config=config)
    if scope is not None:
        data = filter_snapshot(data, scope)
    # The account is one object (one entity, or none yet); the others count their entries.
    counts = {
        channel: (1 if value else 0) if channel == "account" else len(value)
        for channel, value in data.items()
    }
    return StateDump(timestamp=rfc3339_now(), sequence=seq, counts=counts, data=data)


async def client_list(*, config: Settings) -> list[dict[str, Any]]:
    """Every connected client of every live web process."""
    client = _client(config)
    try:
        return await list_clients(client, prefix=config.redis_key_prefix)
    finally:
        await client.aclose()
