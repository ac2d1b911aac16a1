"""What `GET /health/ready` checks: Redis, PostgreSQL, the worker's heartbeat and its backends,
and whether a background task of the worker (named in its heartbeat) or a background loop of
this process (shared/supervision.py) is down.

Each check reports on its own, so an operator sees every failing dependency at once. A backend
that is down is listed but does not make the process unready: the contract treats it as a
warning (the dashboard still serves what it has), while without Redis, PostgreSQL or a leading
worker nothing new reaches clients.
"""

from __future__ import annotations

import time
from typing import Any, Final, TypedDict

import orjson
import redis.asyncio as aioredis
from asgiref.sync import sync_to_async
from django.db import connection
from redis.exceptions import ResponseError

from history.stream_group import GROUP as RECORDER_GROUP
from shared import redis_clients, supervision
from shared.config import Settings
from shared.keys import RedisNames

# A readiness probe must answer well inside the orchestrator's probe timeout (1 s by default in
# Kubernetes would be tight; probes are usually given a few seconds).
_REDIS_TIMEOUT_S: Final = 2.0


# What a caller without detail sees of each check: its status and numbers, never an error
# string (they name hosts, ports and users) or the worker's id (it names its host). A list of
# what is shown, not of what is hidden, so that a field added later stays private by default.
# The names of dead background tasks are shown: they are the product's own words, and naming
# the task is the point of the 503.
PUBLIC_FIELDS: Final = frozenset(
    {"status", "latency_ms", "seq", "age_s", "depth", "down", "failed_tasks", "idle_s"}
)


class Readiness(TypedDict):
    """The `/health/ready` body."""

    status: str  # "ready" or "not_ready"
    checks: dict[str, Any]


async def readiness(config: Settings) -> Readiness:
    """Run every check; ready when Redis, the database and a live worker all answer."""
    names = RedisNames(config.redis_key_prefix, config.input_prefix)
    client = redis_clients.async_client(
        config,
        socket_timeout=_REDIS_TIMEOUT_S,
        socket_connect_timeout=_REDIS_TIMEOUT_S,
    )
    try:
        checks: dict[str, Any] = {"redis": await _check_redis(client)}
        checks["redis"] = await _check_redis_role(client, checks["redis"])
        checks["database"] = await sync_to_async(_check_database)()
        if checks["redis"]["status"] == "up":
            worker, backends = await _check_worker(client, names, config)
            checks["worker"] = worker
            checks["backends"] = backends
            depth = int(await client.xlen(names.history_stream))
            checks["history_queue"] = {"depth": depth}
            checks["recorder"] = await _check_recorder(client, names, config, depth)
        else:
            checks["worker"] = {"status": "unknown", "error": "redis is down"}
            checks["backends"] = {}
            checks["history_queue"] = {"depth": None}
            checks["recorder"] = {"status": "unknown", "error": "redis is down"}
    finally:
        await client.aclose()
    checks["tasks"] = supervision.check()  # this process's background loops
    ready = (
        all(checks[name]["status"] == "up" for name in ("redis", "database", "worker", "tasks"))
        and checks["recorder"]["status"] != "down"
    )
    return Readiness(status="ready" if ready else "not_ready", checks=checks)


async def _check_recorder(
    client: aioredis.Redis, names: RedisNames, config: Settings, depth: int
) -> dict[str, Any]:
    """Whether a recorder takes the history stream: `down` if rows wait and none is read.

    A recorder is a consumer of the stream's group. Redis counts each consumer's `idle` time,
    since its last delivery in Redis 7.0 (since its last read from 7.2): a live recorder is
    handed what waits within `history_read_block_ms`. So when rows have waited longer than
    `history_claim_idle_s` — the point where another recorder would take them as a dead one's —
    and no recorder was handed anything for as long, every recorder died or hung. A recorder
    that stops on purpose leaves the group, so a deployment without one is `absent`, which
    does not make the web unready (the stream holds the rows up to its cap).
    """
    try:
        consumers = await client.xinfo_consumers(names.history_stream, RECORDER_GROUP)
    except ResponseError:  # no stream or no group yet: no recorder ever started
        consumers = []
    if not consumers:
        return {"status": "absent"}
    idle_s = min(int(consumer["idle"]) for consumer in consumers) / 1000
    limit_s = config.history_claim_idle_s
    status = "up"
    if depth and idle_s > limit_s:
        oldest = await client.xrange(names.history_stream, count=1)
        seconds, micros = await client.time()  # entry ids are the Redis server's clock, in ms
        if oldest:
            entry_id = oldest[0][0]
            text = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
            appended_ms = int(text.partition("-")[0])
            waited_s = seconds + micros / 1e6 - appended_ms / 1000
            status = "down" if waited_s > limit_s else "up"
    return {"status": status, "idle_s": round(idle_s, 1), "consumers": len(consumers)}


async def _check_redis(client: aioredis.Redis) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        await client.ping()
    except Exception as exc:  # any failure means "not ready", reported, never raised
        return {"status": "down", "error": str(exc) or type(exc).__name__}
    return {"status": "up", "latency_ms": round((time.perf_counter() - started) * 1000, 2)}


async def _check_redis_role(client: aioredis.Redis, check: dict[str, Any]) -> dict[str, Any]:
    """Add the role of the node answering; a read-only replica cannot serve the desk."""
    if check["status"] != "up":
        return check
    try:
        role = await redis_clients.server_role(client)
    except ResponseError:  # an ACL may forbid ROLE: the node answered, its role is unknown
        return {**check, "role": "unknown"}
    except Exception as exc:  # any failure means "not ready", reported, never raised
        return {"status": "down", "error": f"ROLE: {exc}"}
    if role != "master":
        return {**check, "status": "down", "role": role, "error": "talks to a read-only replica"}
    return {**check, "role": role}


def _check_database() -> dict[str, Any]:
    started = time.perf_counter()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # any failure means "not ready", reported, never raised
        return {"status": "down", "error": str(exc).strip() or type(exc).__name__}
    return {"status": "up", "latency_ms": round((time.perf_counter() - started) * 1000, 2)}


async def _check_worker(
    client: aioredis.Redis, names: RedisNames, config: Settings
) -> tuple[dict[str, Any], dict[str, Any]]:
    raw = await client.get(names.heartbeat)
    if raw is None:  # the key expires a lease after the leader's last renewal
        return {"status": "down", "error": "no worker heartbeat"}, {}
    beat = orjson.loads(raw)
    age = round(max(0.0, time.time() - float(beat["at"])), 3)
    failed = sorted(beat.get("failed_tasks") or {})  # died lately, restarted since
    worker = {
        "status": "up" if age <= config.ready_heartbeat_max_age_s and not failed else "down",
        "id": beat.get("worker"),
        "seq": beat.get("seq"),
        "age_s": age,
        "failed_tasks": failed,
    }
    backends = {
        name: {"status": "up" if up else "down"}
        for name, up in sorted((beat.get("backends") or {}).items())
    }
    return worker, backends


def without_detail(body: Readiness) -> Readiness:
    """`body` as an anonymous caller sees it: each check's status, none of its detail."""
    checks: dict[str, Any] = {}
    for name, check in body["checks"].items():
        if name == "backends":  # one entry per backend, each a check
            checks[name] = {backend: _public(value) for backend, value in check.items()}
        else:
            checks[name] = _public(check)
    return Readiness(status=body["status"], checks=checks)


def _public(check: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in check.items() if key in PUBLIC_FIELDS}
