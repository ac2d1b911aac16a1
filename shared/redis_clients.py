"""The one place that builds Redis clients, for every process: one URL, or a master behind Sentinel.

Every client (worker, feed, hub, selectors, recorder, readiness, simulator, preflight and the
channel layer's pools) comes from here, so a Sentinel deployment is one setting for all of them
and a failover is followed by each client the same way: a connection that breaks is re-opened
to the master the sentinels name at that moment.

Each new connection also asks the server its `ROLE`, so the `dashboard_redis_role` metric says
what the process is talking to, and a change of master address seen through the sentinels
counts one `dashboard_redis_failovers` in that process.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Final, cast

import redis
import redis.asyncio as aioredis
from prometheus_client import Counter, Gauge
from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from redis.asyncio.sentinel import SentinelConnectionPool as AsyncSentinelPool
from redis.connection import parse_url
from redis.sentinel import Sentinel, SentinelConnectionPool

from shared.config import Settings

ROLES: Final = ("master", "replica")
REDIS_ROLE = Gauge(
    "dashboard_redis_role",
    "1 for the role (master or replica) of the Redis node this process last connected to.",
    ["role"],
)
REDIS_FAILOVERS = Counter(
    "dashboard_redis_failovers",
    "Times this process saw the sentinels name a different master (a failover it followed).",
)
# The sentinels answer in milliseconds on a LAN; a dead one must not hold a reconnect for long,
# since the client then asks the next one.
_SENTINEL_TIMEOUT_S: Final = 1.0

# The master address last seen by this process, per master name: one per process (not per pool)
# so that a failover counts once, however many clients the process holds.
_masters: dict[str, tuple[str, int]] = {}


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """Where the product's Redis is: one URL, or a master name behind sentinels."""

    url: str = ""
    sentinels: tuple[tuple[str, int], ...] = ()
    db: int = 0  # with sentinels: the database number (a URL carries its own)
    master_name: str = ""
    password: str | None = None
    sentinel_password: str | None = None

    @classmethod
    def from_settings(cls, config: Settings) -> RedisTarget:
        """The target the settings describe: the sentinels if any are set, else the URL."""
        if not config.redis_sentinels:
            return cls(url=str(config.redis_url))
        return cls(
            sentinels=tuple(_address(entry) for entry in config.redis_sentinels),
            db=int(parse_url(str(config.redis_url)).get("db", 0)),  # type: ignore[no-untyped-call]
            master_name=config.redis_master_name,
            password=config.redis_password or None,
            sentinel_password=config.redis_sentinel_password or None,
        )

    def describe(self) -> str:
        """A line naming the target for error messages (never a password)."""
        if not self.sentinels:
            return self.url.split("@")[-1] if "@" in self.url else self.url
        where = ",".join(f"{host}:{port}" for host, port in self.sentinels)
        return f"master {self.master_name!r} of sentinels {where}"


RedisSource = Settings | RedisTarget


def async_client(
    source: RedisSource,
    *,
    socket_timeout: float | None,
    socket_connect_timeout: float,
    health_check_interval: int = 0,
) -> aioredis.Redis:
    """An asyncio client of the master, with the caller's timeouts."""
    target = _target(source)
    options: dict[str, Any] = {
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": socket_connect_timeout,
        "health_check_interval": health_check_interval,
        "redis_connect_func": _async_on_connect,
    }
    if not target.sentinels:
        return aioredis.Redis.from_url(target.url, **options)
    return cast(aioredis.Redis, _master_for(target, AsyncSentinel, _CountingAsyncPool, options))


def sync_client(
    source: RedisSource, *, socket_timeout: float | None, socket_connect_timeout: float
) -> redis.Redis:
    """A blocking client of the master, with the caller's timeouts."""
    target = _target(source)
    options: dict[str, Any] = {
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": socket_connect_timeout,
        "redis_connect_func": _sync_on_connect,
    }
    if not target.sentinels:
        return redis.Redis.from_url(target.url, **options)
    return cast(redis.Redis, _master_for(target, Sentinel, _CountingPool, options))


def channel_layer_host(source: RedisSource, **pool_options: Any) -> dict[str, Any]:
    """One channels-redis `hosts` entry (core and pub/sub layers read the same shape)."""
    target = _target(source)
    if not target.sentinels:
        return {"address": target.url, **pool_options}
    return {
        "master_name": target.master_name,
        "sentinels": list(target.sentinels),
        "sentinel_kwargs": _sentinel_kwargs(target),
        "db": target.db,
        "password": target.password,
        **pool_options,
    }


async def server_role(client: aioredis.Redis) -> str:
    """The role of the node `client` talks to, `master` or `replica` (from `ROLE`)."""
    return _role_name(await client.execute_command("ROLE"))  # type: ignore[no-untyped-call]


def _master_for(
    target: RedisTarget, sentinel_class: type, pool_class: type, options: dict[str, Any]
) -> Any:
    """A client of the master the sentinels name (asyncio or blocking, by the classes)."""
    sentinel = sentinel_class(list(target.sentinels), sentinel_kwargs=_sentinel_kwargs(target))
    return sentinel.master_for(
        target.master_name,
        connection_pool_class=pool_class,
        db=target.db,
        password=target.password,
        **options,
    )


def _target(source: RedisSource) -> RedisTarget:
    return source if isinstance(source, RedisTarget) else RedisTarget.from_settings(source)


def _address(entry: str) -> tuple[str, int]:
    host, _, port = entry.rpartition(":")
    return host.strip("[]"), int(port)


def _sentinel_kwargs(target: RedisTarget) -> dict[str, Any]:
    return {
        "socket_timeout": _SENTINEL_TIMEOUT_S,
        "socket_connect_timeout": _SENTINEL_TIMEOUT_S,
        "password": target.sentinel_password,
    }


def _role_name(reply: Any) -> str:
    role = reply[0].decode() if isinstance(reply[0], bytes) else str(reply[0])
    return "replica" if role in ("slave", "replica") else role


def _record_role(reply: Any) -> None:
    role = _role_name(reply)
    for name in ROLES:
        REDIS_ROLE.labels(role=name).set(1 if name == role else 0)


def _record_master(name: str, address: Any) -> None:
    address = (str(address[0]), int(address[1]))
    previous = _masters.get(name)
    if previous is not None and previous != address:
        REDIS_FAILOVERS.inc()
    _masters[name] = address


async def _async_on_connect(connection: Any) -> None:
    """Called on every new asyncio connection: the usual handshake, then `ROLE` for the metric."""
    await connection.on_connect()
    await connection.send_command("ROLE")
    with contextlib.suppress(redis.ResponseError):  # an ACL may forbid ROLE: no metric then
        _record_role(await connection.read_response())


def _sync_on_connect(connection: Any) -> None:
    """Called on every new blocking connection: the usual handshake, then `ROLE`."""
    connection.on_connect()
    connection.send_command("ROLE")
    with contextlib.suppress(redis.ResponseError):  # an ACL may forbid ROLE: no metric then
        _record_role(connection.read_response())


class _CountingAsyncPool(AsyncSentinelPool):
    """A Sentinel pool that counts each change of master address it is told about."""

    async def get_master_address(self) -> Any:
        """Called before each new connection: ask the sentinels, note a changed master."""
        address = await super().get_master_address()  # type: ignore[no-untyped-call]
        _record_master(self.service_name, address)
        return address

    async def disconnect(self, inuse_connections: bool = True) -> None:
        """Called on close (all connections) and on a failover (idle ones only)."""
        await super().disconnect(inuse_connections)
        if inuse_connections:  # the client is closing: its sentinels' connections go too
            await self.sentinel_manager.aclose()


class _CountingPool(SentinelConnectionPool):
    """The blocking twin of `_CountingAsyncPool`."""

    def get_master_address(self) -> Any:
        """Called before each new connection: ask the sentinels, note a changed master."""
        address = super().get_master_address()  # type: ignore[no-untyped-call]
        _record_master(self.service_name, address)
        return address

    def disconnect(self, inuse_connections: bool = True) -> None:
        """Called on close (all connections) and on a failover (idle ones only)."""
        super().disconnect(inuse_connections)
        if inuse_connections:  # the client is closing: its sentinels' connections go too
            for sentinel in self.sentinel_manager.sentinels:
                sentinel.close()
