"""Connected clients across every web process, in Redis (for admin, /api/v1/clients, kicks).

Each web process keeps one hash of its clients, refreshed by its hub every few seconds with a
TTL, so a process that dies disappears from the list by itself. Kicks travel over the channel
layer to whichever process holds the client.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Final

import orjson
import redis.asyncio as aioredis

from realtime.protocol import Subscription
from shared.keys import RedisNames

log = logging.getLogger(__name__)

PRESENCE_TTL_S: Final = 15  # three missed heartbeats (every 5 s) and a process's list expires
HEARTBEAT_S: Final = 5.0


@dataclass(slots=True)
class ClientInfo:
    """What the registry shows of one connection."""

    id: str
    type: str
    format: str
    subscriptions: list[str]
    remote_addr: str
    connected_at: str
    process: str
    messages_sent: int = 0
    # Who it is: the logged-in user's name for a browser session, the token's name for a token.
    user: str = ""
    token: str = ""


def identity(credential: Any) -> tuple[str, str]:
    """(user, token) of a ClientInfo, from the connection's access credential (or None)."""
    kind, name = getattr(credential, "kind", ""), str(getattr(credential, "name", ""))
    return (name if kind == "session" else "", name if kind == "token" else "")


def describe_subscription(subscription: Subscription) -> list[str]:
    """A ClientInfo's `subscriptions`: channel names, and `channel:symbol` for narrowed ones."""
    out: list[str] = []
    for name, symbols in sorted(subscription.items()):
        if symbols is None:
            out.append(name)
        else:
            out.extend(f"{name}:{symbol}" for symbol in sorted(symbols))
    return out


async def publish_presence(
    client: aioredis.Redis, *, prefix: str, process: str, clients: list[ClientInfo]
) -> None:
    """Replace this process's list of clients (one transaction) and refresh its TTL."""
    key = RedisNames(prefix).presence(process)
    pipe = client.pipeline(transaction=True)
    pipe.delete(key)
    if clients:
        pipe.hset(key, mapping={c.id: orjson.dumps(asdict(c)) for c in clients})
        pipe.expire(key, PRESENCE_TTL_S)
    await pipe.execute()


async def publish_presence_forever(
    client: aioredis.Redis, *, prefix: str, process: str, clients: Callable[[], list[ClientInfo]]
) -> None:
    """Publish this process's clients every `HEARTBEAT_S`, forever (the hub's presence loop)."""
    while True:
        try:
            await publish_presence(client, prefix=prefix, process=process, clients=clients())
        except Exception as exc:  # Redis away: the entries expire, and come back with it
            log.warning("presence update failed", extra={"error": str(exc)})
        await asyncio.sleep(HEARTBEAT_S)


async def list_clients(client: aioredis.Redis, *, prefix: str) -> list[dict[str, Any]]:
    """Every connected client of every live web process, oldest connection first."""
    found: list[dict[str, Any]] = []
    async for key in client.scan_iter(match=RedisNames(prefix).presence("*"), count=1000):
        for raw in (await client.hgetall(key)).values():
            found.append(orjson.loads(raw))
    return sorted(found, key=lambda c: (c["connected_at"], c["id"]))
