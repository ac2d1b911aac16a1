"""The worker in-process against real Redis: ingest, bad input, broadcast, shared snapshot,
history log, reconnects. (Two-process failover and SIGTERM: test_worker_processes.py.)"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from typing import Any

import msgpack
import orjson
import pytest
import redis.asyncio as aioredis
from asgiref.sync import async_to_sync
from channels_redis.pubsub import RedisPubSubChannelLayer
from django.conf import settings
from django.db import connection

from aggregation.crash_loop import TaskCrashLoop
from aggregation.shared_snapshot import SharedSnapshot
from aggregation.worker import Worker
from dashboard_project.readiness import Readiness, readiness
from shared.config import Settings
from shared.core.changes import apply_changes

pytestmark = pytest.mark.integration


def stamp() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def tick(symbol: str, price: float, **extra: Any) -> bytes:
    return orjson.dumps({"symbol": symbol, "last_price": price, "updated_at": stamp(), **extra})


async def eventually(condition: Any, *, timeout: float = 5.0, what: str = "condition") -> Any:  # noqa: ASYNC109
    """Poll a sync or async condition until truthy (never a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


@pytest.fixture
def worker_config(key_prefix: str) -> Settings:
    """Settings for one isolated worker: its own key prefix, backends nowhere (none polled)."""
    return settings.CONFIG.model_copy(
        update={
            "redis_key_prefix": key_prefix.rstrip(":"),
            "input_prefix": key_prefix,
            "leader_lease_ms": 1000,
            "leader_renew_ms": 200,
        }
    )


@pytest.fixture
async def layer(redis_url: str, key_prefix: str) -> AsyncIterator[RedisPubSubChannelLayer]:
    channel_layer = RedisPubSubChannelLayer(
        hosts=[{"address": redis_url, "socket_timeout": None}],
        prefix=key_prefix.rstrip(":") + ".asgi",
    )
    yield channel_layer
    await channel_layer.flush()


@pytest.fixture
async def worker(
    worker_config: Settings, layer: RedisPubSubChannelLayer, aredis: aioredis.Redis
) -> AsyncIterator[Worker]:
    aggregator = Worker(worker_config, layer=layer, backends=[])
    stop = asyncio.Event()
    task = asyncio.create_task(aggregator.run(stop))
    await eventually(aggregator.leading.is_set, what="leadership")
    await eventually(lambda: aggregator.feed_connected, what="subscription")
    yield aggregator
    stop.set()
    await asyncio.wait_for(task, timeout=15)


async def subscribe(layer: RedisPubSubChannelLayer, group: str) -> str:
    channel = await layer.new_channel()
    await layer.group_add(group, channel)
    return channel


async def test_published_ticks_reach_the_state(worker: Worker, aredis: aioredis.Redis) -> None:
    prefix = worker.names.input_prefix
    await aredis.publish(f"{prefix}market_data:BTCUSDT", tick("BTCUSDT", 50000.5))
    await aredis.publish(
        f"{prefix}positions:ETHUSDT", orjson.dumps({"symbol": "ETHUSDT", "quantity": 2.0})
    )
    await eventually(lambda: worker.state.counts()["positions"] == 1, what="position")
    assert worker.state.entity("market_data", "BTCUSDT")["last_price"] == 50000.5
    await aredis.publish(
        f"{prefix}positions:ETHUSDT", orjson.dumps({"symbol": "ETHUSDT", "quantity": 0})
    )
    await eventually(lambda: worker.state.counts()["positions"] == 0, what="position closed")


HOSTILE = [
    ("market_data:BTCUSDT", b"not json", "bad_json"),
    ("market_data:BTCUSDT", b"[1,2]", "not_object"),
    ("market_data:BTCUSDT", b'{"symbol":"BTCUSDT","last_price":"1"}', "invalid_field"),
    ("market_data:BTCUSDT", b'{"symbol":"BTCUSDT","last_price":NaN}', "bad_json"),
    ("market_data:BTCUSDT", b'{"symbol":"BTCUSDT","last_price":true}', "invalid_field"),
    ("market_data:BTCUSDT", b'{"last_price":1}', "missing_field"),
    ("market_data:X", b'{"symbol":"../../etc","last_price":1}', "invalid_field"),
    (
        "orders:BTCUSDT",
        b'{"id":"o1","symbol":"BTCUSDT","side":"HOLD","quantity":1,"status":"NEW"}',
        "invalid_field",
    ),
    ("account:main", b'{"total_balance":1,"updated_at":1732363200}', "invalid_field"),
    (
        "market_data:BTCUSDT",
        b'{"symbol":"BTCUSDT","last_price":1,"pad":"' + b"x" * 1_048_576 + b'"}',
        "too_large",
    ),
    ("market_data:BTCUSDT", b"[" * 60_000, "bad_json"),  # nesting, under the size limit
    ("orderbook:../../etc", b"{}", "invalid_channel"),
    # `$` matches before a trailing newline: these would become look-alikes of BTCUSDT
    ("market_data:BTCUSDT", b'{"symbol":"BTCUSDT\\n","last_price":1}', "invalid_field"),
    ("orderbook:BTCUSDT\n", b"{}", "invalid_channel"),
    # values some encoder on the path (orjson, msgpack, jsonb) cannot carry
    (
        "market_data:ZZ",
        b'{"symbol":"ZZ","last_price":1,"v":100000000000000000000}',
        "unrepresentable_number",
    ),
    (
        "market_data:ZZ",
        b'{"symbol":"ZZ","last_price":1,"m":{"a":[-1e30,-10000000000000000000]}}',
        "unrepresentable_number",
    ),
    (
        "market_data:ZZ",
        b'{"symbol":"ZZ","last_price":1,"note":"a\\u0000b"}',
        "unrepresentable_string",
    ),
    (
        "market_data:ZZ",
        b'{"symbol":"ZZ","last_price":1,"d":' + b"[" * 300 + b"]" * 300 + b"}",
        "too_deep",
    ),
]


async def test_every_bad_input_class_is_counted_and_the_worker_carries_on(
    worker: Worker, aredis: aioredis.Redis
) -> None:
    prefix = worker.names.input_prefix
    for channel, payload, _ in HOSTILE:
        await aredis.publish(f"{prefix}{channel}", payload)
    await aredis.publish(f"{prefix}market_data:GOODUSDT", tick("GOODUSDT", 1.0))
    await eventually(lambda: worker.state.entity("market_data", "GOODUSDT"), what="good tick")
    counts = worker.ingest_counts()
    expected: dict[tuple[str, str], int] = {}
    for channel, _, reason in HOSTILE:
        key = (channel.split(":")[0], reason)
        expected[key] = expected.get(key, 0) + 1
    for key, n in expected.items():
        assert counts.get(key) == n, (key, counts)
    assert worker.state.counts()["market_data"] == 1


async def test_strategy_payload_that_is_not_a_strategy_asks_for_a_reload(
    worker: Worker, aredis: aioredis.Redis
) -> None:
    await aredis.publish(f"{worker.names.input_prefix}strategies:s1", b'{"event":"changed"}')
    await eventually(lambda: worker.ingest_counts().get(("strategies", "reload")), what="reload")


async def test_each_cadence_gets_one_update_in_both_encodings(
    worker: Worker, layer: RedisPubSubChannelLayer, aredis: aioredis.Redis
) -> None:
    # given a client of each cadence's group holding the state's snapshot
    web = await subscribe(layer, worker.names.group("web"))
    tui = await subscribe(layer, worker.names.group("tui"))
    snapshot = worker.state.snapshot()
    seq = worker.state.seq
    # when ticks arrive
    prefix = worker.names.input_prefix
    for price in (1.0, 2.0, 3.0):
        await aredis.publish(f"{prefix}market_data:BTCUSDT", tick("BTCUSDT", price, venue="x"))
    await eventually(
        lambda: (e := worker.state.entity("market_data", "BTCUSDT")) and e["last_price"] == 3.0,
        what="ticks applied",
    )
    # then each cadence's group receives updates whose two encodings agree and whose changes,
    # applied in order, bring the snapshot to the state
    for channel, cadence in ((web, "web"), (tui, "tui")):
        replica = orjson.loads(orjson.dumps(snapshot))
        last = seq
        while last < worker.state.seq:
            event = await asyncio.wait_for(layer.receive(channel), timeout=5)
            assert event["type"] == "state.update"
            assert event["cadence"] == cadence
            frame = orjson.loads(event["json"])
            assert frame == msgpack.unpackb(event["msgpack"])
            assert set(frame) == {"type", "seq", "base_seq", "epoch", "timestamp", "changes"}
            assert frame["type"] == "update"
            assert frame["seq"] == event["seq"] > last >= event["base_seq"] == frame["base_seq"]
            assert frame["epoch"] == event["epoch"] == worker.shared.epoch
            apply_changes(replica, frame["changes"])
            last = event["seq"]
        assert replica == worker.state.snapshot()


async def test_shared_snapshot_follows_the_state(worker: Worker, aredis: aioredis.Redis) -> None:
    prefix = worker.names.input_prefix
    await aredis.publish(f"{prefix}market_data:BTCUSDT", tick("BTCUSDT", 7.0))
    await aredis.publish(
        f"{prefix}account:main", orjson.dumps({"total_balance": 5.0, "balances": {"USDT": 5.0}})
    )
    await eventually(lambda: worker.state.counts()["account"] == 2, what="account")
    shared = SharedSnapshot(aredis, worker.names)

    async def mirrored() -> bool:
        snapshot, seq, epoch = await shared.load()
        assert all(type(key) is str for key in snapshot)  # ready for any JSON encoder
        return (
            seq == worker.state.seq
            and snapshot == worker.state.snapshot()
            and epoch == worker.shared.epoch  # written with the seq
        )

    await eventually(mirrored, what="shared snapshot at the state's seq")


async def test_history_log_receives_every_applied_change(
    worker: Worker, aredis: aioredis.Redis
) -> None:
    prefix = worker.names.input_prefix
    start = worker.state.seq
    for i in range(50):
        await aredis.publish(f"{prefix}market_data:S{i % 5}", tick(f"S{i % 5}", float(i)))
    await eventually(lambda: worker.history.appended == 50, what="50 rows appended")
    entries = await aredis.xrange(worker.names.history_stream)
    rows = [orjson.loads(fields[b"r"]) for _, fields in entries]
    assert [row[1] for row in rows] == list(range(start + 1, start + 51))
    assert rows[-1][0] == "market_data"
    assert rows[-1][3]["last_price"] == 49.0


async def test_cache_keys_are_loaded_and_orderbook_reloads_one(
    worker_config: Settings, layer: RedisPubSubChannelLayer, aredis: aioredis.Redis
) -> None:
    prefix = worker_config.input_prefix
    await aredis.set(f"{prefix}market_data:AAAUSDT", tick("AAAUSDT", 1.0))
    await aredis.set(f"{prefix}market_data:BBBUSDT", b"corrupt")
    aggregator = Worker(worker_config, layer=layer, backends=[])
    stop = asyncio.Event()
    task = asyncio.create_task(aggregator.run(stop))
    try:
        await eventually(lambda: aggregator.state.entity("market_data", "AAAUSDT"), what="load")
        assert aggregator.ingest_counts()[("cache", "bad_json")] == 1
        await aredis.set(f"{prefix}market_data:AAAUSDT", tick("AAAUSDT", 2.0))
        await aredis.publish(f"{prefix}orderbook:AAAUSDT", b'{"bids":[]}')
        await eventually(
            lambda: aggregator.state.entity("market_data", "AAAUSDT")["last_price"] == 2.0,
            what="reload after orderbook",
        )
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=15)


async def test_subscriber_cut_by_redis_reconnects_by_itself(
    worker: Worker, aredis: aioredis.Redis
) -> None:
    # given a running worker; when Redis drops every pub/sub connection (as it does to a slow
    # subscriber, or on restart)
    await aredis.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
    # then the worker resubscribes and applies later ticks, and counts the reconnect
    prefix = worker.names.input_prefix

    async def applied() -> bool:
        await aredis.publish(f"{prefix}market_data:AFTER", tick("AFTER", 1.0))
        return worker.state.entity("market_data", "AFTER") is not None

    await eventually(applied, timeout=10, what="ticks after reconnect")
    assert worker.feed.reconnects >= 1


async def test_lost_shared_state_is_rewritten_whole(worker: Worker, aredis: aioredis.Redis) -> None:
    # given a state mirrored to Redis
    prefix = worker.names.input_prefix
    await aredis.publish(f"{prefix}market_data:KEEPUSDT", tick("KEEPUSDT", 1.0))
    await eventually(lambda: worker.state.entity("market_data", "KEEPUSDT"), what="tick")
    shared = SharedSnapshot(aredis, worker.names)

    async def mirrored() -> bool:
        return "KEEPUSDT" in (await shared.load()).data["market_data"]

    await eventually(mirrored, what="tick in the shared snapshot")
    lineage = worker.shared.epoch
    # when Redis loses every key (a restart without persistence)
    keys = [k async for k in aredis.scan_iter(match=f"{worker.names.prefix}:*")]
    await aredis.delete(*keys)
    await aredis.publish(f"{prefix}market_data:NEWUSDT", tick("NEWUSDT", 1.0))
    # then the worker takes the lease again and rewrites the whole snapshot

    async def whole() -> bool:
        snapshot, seq, epoch = await shared.load()
        return (
            seq == worker.state.seq
            and set(snapshot["market_data"]) == {"KEEPUSDT", "NEWUSDT"}
            and epoch == worker.shared.epoch
        )

    await eventually(whole, timeout=10, what="snapshot rewritten")
    assert await aredis.get(worker.names.leader) == worker.worker_id.encode()
    # in a new lineage: nobody can vouch for the seqs while Redis was away (contract 4.1)
    assert worker.shared.epoch != lineage


async def test_backends_down_leave_the_state_untouched_and_say_so(
    worker_config: Settings, layer: RedisPubSubChannelLayer, aredis: aioredis.Redis
) -> None:
    # given backends at addresses where nothing listens
    from aggregation import metrics
    from aggregation.backends import build_backends
    from support.processes import free_port

    nowhere = f"127.0.0.1:{free_port()}"
    config = worker_config.model_copy(
        update={
            "order_service_grpc": nowhere,
            "account_service_grpc": nowhere,
            "strategy_service_http": f"http://{nowhere}",
            "backend_timeout_s": 0.5,
            "backend_retries": 0,
            "breaker_failure_threshold": 1,
        }
    )
    backends = build_backends(config)
    aggregator = Worker(config, layer=layer, backends=backends)
    stop = asyncio.Event()
    task = asyncio.create_task(aggregator.run(stop))
    try:
        # when the worker polls them
        await eventually(
            lambda: all(b.health().consecutive_failures >= 1 for b in backends),
            timeout=10,
            what="every backend polled",
        )
        # then nothing was invented, the breakers are open, and health and metrics say so
        assert aggregator.state.counts() == {
            "market_data": 0,
            "orders": 0,
            "positions": 0,
            "account": 0,
            "strategies": 0,
        }
        assert not any(result == "applied" for _, result in aggregator.ingest_counts())
        assert aggregator.history.appended == 0
        for backend in backends:
            health = backend.health()
            assert health.up is False
            assert health.breaker == "open"
            assert health.last_error
            assert metrics.BACKEND_UP.labels(backend.name)._value.get() == 0

        async def heartbeat_says_down() -> bool:
            raw = await aredis.get(aggregator.names.heartbeat)
            return raw is not None and not any(orjson.loads(raw)["backends"].values())

        await eventually(heartbeat_says_down, timeout=5, what="heartbeat with backends down")
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=15)


async def test_timestamps_python_cannot_parse_are_still_applied(
    worker: Worker, aredis: aioredis.Redis
) -> None:
    # RFC 3339 allows lower-case "t" and "z"; msgspec accepts them, datetime.fromisoformat not.
    prefix = worker.names.input_prefix
    odd = {"symbol": "ODDUSDT", "last_price": 1.0, "updated_at": "2026-11-23t12:00:00.5z"}
    await aredis.publish(f"{prefix}market_data:ODDUSDT", orjson.dumps(odd))
    await aredis.publish(f"{prefix}market_data:NEXTUSDT", tick("NEXTUSDT", 2.0))
    await eventually(lambda: worker.state.entity("market_data", "NEXTUSDT"), what="next tick")
    assert worker.state.entity("market_data", "ODDUSDT") == odd
    assert worker.feed.reconnects == 0
    assert worker.leading.is_set()


async def test_a_new_leader_after_redis_lost_everything_never_reuses_a_seq(
    worker_config: Settings, layer: RedisPubSubChannelLayer, aredis: aioredis.Redis
) -> None:
    # given a leader that has applied changes, then stopped
    first = Worker(worker_config, layer=layer, backends=[])
    stop = asyncio.Event()
    task = asyncio.create_task(first.run(stop))
    await eventually(lambda: first.feed_connected, what="first worker subscribed")
    prefix = worker_config.input_prefix
    for i in range(5):
        await aredis.publish(f"{prefix}market_data:A", tick("A", float(i + 1)))
    await eventually(lambda: first.state.entity("market_data", "A"), what="ticks applied")
    last_seq = first.state.seq
    assert last_seq > 1_000_000_000_000_000  # started at the wall-clock floor, in microseconds
    stop.set()
    await asyncio.wait_for(task, timeout=15)
    # when Redis loses every key (a restart without persistence) and another worker leads
    keys = [k async for k in aredis.scan_iter(match=f"{first.names.prefix}:*")]
    if keys:
        await aredis.delete(*keys)
    second = Worker(worker_config, layer=layer, backends=[])
    stop = asyncio.Event()
    task = asyncio.create_task(second.run(stop))
    try:
        await eventually(second.leading.is_set, what="second worker leads")
        # then its seq starts past every seq the first one can have sent
        assert second.state.seq > last_seq
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=15)


class BreakingLayer:
    """The real channel layer, except that its next `failures` group sends raise — a bug in
    the broadcast path, which kills the tick task that called it."""

    def __init__(self, layer: RedisPubSubChannelLayer, failures: float) -> None:
        self.layer = layer
        self.failures = failures

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise RuntimeError("injected broadcast bug")
        await self.layer.group_send(group, message)


@pytest.mark.django_db(transaction=True)  # readiness checks the database from a thread
async def test_a_worker_task_that_dies_is_named_by_readiness_restarted_and_then_ready(
    worker_config: Settings, layer: RedisPubSubChannelLayer, aredis: aioredis.Redis
) -> None:
    # given a leading worker whose next broadcast fails, and a client of the tui cadence
    config = worker_config.model_copy(update={"task_failure_report_s": 2.0})
    aggregator = Worker(config, layer=BreakingLayer(layer, failures=1), backends=[])
    stop = asyncio.Event()
    task = asyncio.create_task(aggregator.run(stop))
    try:
        await eventually(lambda: aggregator.feed_connected, what="subscription")
        tui = await subscribe(layer, aggregator.names.group("tui"))
        prices = iter(range(1, 100_000))

        async def publish() -> None:
            symbol = "BTCUSDT"
            payload = tick(symbol, float(next(prices)))
            await aredis.publish(f"{aggregator.names.input_prefix}market_data:{symbol}", payload)

        # when a tick task dies of it
        async def names_it() -> Any:
            await publish()
            body = await asyncio.to_thread(probe, config)
            failed = body["checks"]["worker"].get("failed_tasks")
            return body["status"] == "not_ready" and failed and body

        body = await eventually(names_it, what="readiness naming the dead task")
        # then readiness named it (503)
        assert body["checks"]["worker"]["failed_tasks"] == ["tick-tui"]

        # and the task was restarted: updates reach the cadence's clients again
        async def update_received() -> bool:
            await publish()
            try:
                event = await asyncio.wait_for(layer.receive(tui), timeout=0.5)
            except TimeoutError:
                return False
            return bool(event["type"] == "state.update")

        await eventually(update_received, what="updates after the restart")
        # and readiness is back once the restarted task has lived task_failure_report_s
        await eventually(
            lambda: _is_ready(config), timeout=config.task_failure_report_s + 5, what="ready"
        )
        assert aggregator.leading.is_set()
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=15)


def probe(config: Settings) -> Readiness:
    """`/health/ready`'s checks, run as the web process runs them: from a thread of its own."""
    try:
        return async_to_sync(readiness)(config)
    finally:
        connection.close()  # this thread's connection: the test database must be droppable


async def _is_ready(config: Settings) -> bool:
    return (await asyncio.to_thread(probe, config))["status"] == "ready"


async def test_a_worker_whose_tasks_keep_dying_exits_and_releases_the_lease(
    worker_config: Settings, layer: RedisPubSubChannelLayer, aredis: aioredis.Redis
) -> None:
    # given a worker whose every broadcast fails (the cause survives each restart)
    aggregator = Worker(worker_config, layer=BreakingLayer(layer, math.inf), backends=[])
    task = asyncio.create_task(aggregator.run(asyncio.Event()))
    await eventually(lambda: aggregator.feed_connected, what="subscription")
    prefix = aggregator.names.input_prefix
    price = 0.0

    async def exited() -> bool:
        nonlocal price
        price += 1
        await aredis.publish(f"{prefix}market_data:BTCUSDT", tick("BTCUSDT", price))
        return task.done()

    # when its tasks have died and been restarted over and over
    await eventually(exited, timeout=30, what="the worker to give up")
    # then it exits (the command turns this into exit code 1) and a standby may lead at once
    with pytest.raises(TaskCrashLoop, match="tick-"):
        task.result()
    assert await aredis.get(aggregator.names.leader) is None


async def test_a_worker_that_lost_its_lease_appends_no_more_history(
    worker: Worker, aredis: aioredis.Redis
) -> None:
    # given a leader whose history is all appended
    prefix = worker.names.input_prefix
    stream = worker.names.history_stream
    for price in (1.0, 2.0, 3.0):
        await aredis.publish(f"{prefix}market_data:BTCUSDT", tick("BTCUSDT", price))
    await eventually(lambda: _xlen_is(aredis, stream, 3), what="history appended")
    # when another worker takes the lease (ours expired during a stall, say) and input goes on
    # before the old leader notices
    await aredis.set(worker.names.leader, b"usurper", px=60_000)
    for price in (4.0, 5.0, 6.0, 7.0):
        await aredis.publish(f"{prefix}market_data:BTCUSDT", tick("BTCUSDT", price))
    await eventually(lambda: not worker.leading.is_set(), what="the step-down")
    await eventually(lambda: worker.history.buffered == 0, what="the buffer flushed or dropped")
    # then none of the stale leader's rows reached the history: the new leader's seqs own it
    assert await aredis.xlen(stream) == 3
    assert worker.history.dropped >= 1  # counted, not silent


async def _xlen_is(client: aioredis.Redis, stream: str, n: int) -> bool:
    return int(await client.xlen(stream)) == n


async def test_a_cache_reload_never_overwrites_a_newer_published_value(
    worker: Worker, aredis: aioredis.Redis
) -> None:
    # given a tick published at 12:00:05 and a cache key still holding the 12:00:00 one
    prefix = worker.names.input_prefix
    newer = {"symbol": "BTCUSDT", "last_price": 2.0, "updated_at": "2026-11-23T12:00:05Z"}
    older = {"symbol": "BTCUSDT", "last_price": 1.0, "updated_at": "2026-11-23T13:00:00+02:00"}
    await aredis.publish(f"{prefix}market_data:BTCUSDT", orjson.dumps(newer))
    await eventually(lambda: worker.state.entity("market_data", "BTCUSDT"), what="the tick")
    await aredis.set(f"{prefix}market_data:BTCUSDT", orjson.dumps(older))
    # when an orderbook event makes the worker reload the key
    await aredis.publish(f"{prefix}orderbook:BTCUSDT", b"{}")
    # then the older value is refused as stale and the newer one stays
    await eventually(lambda: worker.ingest_counts().get(("cache", "stale")), what="stale count")
    assert worker.state.entity("market_data", "BTCUSDT") == newer
    # and a value without updated_at has nothing to compare: the later arrival wins
    await aredis.set(f"{prefix}market_data:BTCUSDT", b'{"symbol":"BTCUSDT","last_price":3.0}')
    await aredis.publish(f"{prefix}orderbook:BTCUSDT", b"{}")
    await eventually(
        lambda: worker.state.entity("market_data", "BTCUSDT")["last_price"] == 3.0,
        what="the stamp-less value applied",
    )


async def test_a_backend_poll_never_overwrites_a_newer_published_value(
    worker_config: Settings, layer: RedisPubSubChannelLayer, aredis: aioredis.Redis
) -> None:
    # given a Strategy service on loopback still reporting s1 as it was at 12:00:00
    polled = {"count": 0}
    reply = orjson.dumps(
        {"strategies": [{"id": "s1", "status": "STOPPED", "updated_at": "2026-11-23T12:00:00Z"}]}
    )

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        polled["count"] += 1
        head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(reply)}"
        writer.write(head.encode() + b"\r\nConnection: close\r\n\r\n" + reply)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    from aggregation.backends.strategy_http import StrategyServiceBackend

    config = worker_config.model_copy(
        update={"strategy_service_http": f"http://127.0.0.1:{port}", "refresh_period_s": 0.2}
    )
    aggregator = Worker(
        config, layer=layer, backends=[StrategyServiceBackend.from_settings(config)]
    )
    stop = asyncio.Event()
    task = asyncio.create_task(aggregator.run(stop))
    try:
        await eventually(lambda: aggregator.feed_connected, what="subscription")
        # when a producer publishes s1 as it is at 12:00:05, and the service is polled after
        newer = {"id": "s1", "status": "RUNNING", "updated_at": "2026-11-23T12:00:05Z"}
        await aredis.publish(f"{config.input_prefix}strategies:s1", orjson.dumps(newer))
        await eventually(
            lambda: aggregator.state.entity("strategies", "s1") == newer, what="the publish"
        )
        since = polled["count"]
        await eventually(lambda: polled["count"] >= since + 2, what="two polls after it")
        # then the poll's older value was refused as stale and the newer one stays
        assert aggregator.state.entity("strategies", "s1") == newer
        assert aggregator.ingest_counts().get(("strategy_service", "stale"), 0) >= 1
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=15)
        server.close()
        await server.wait_closed()


async def test_a_new_leader_reports_no_ingest_lag_it_saw_while_standing_by(
    worker_config: Settings, layer: RedisPubSubChannelLayer, aredis: aioredis.Redis
) -> None:
    # given a leader and a standby that both ingested a tick stamped an hour ago
    leader = Worker(worker_config, layer=layer, backends=[], worker_id="leader")
    standby = Worker(worker_config, layer=layer, backends=[], worker_id="standby")
    stop_leader, stop_standby = asyncio.Event(), asyncio.Event()
    leading = asyncio.create_task(leader.run(stop_leader))
    await eventually(leader.leading.is_set, what="leadership")
    standing_by = asyncio.create_task(standby.run(stop_standby))
    try:
        await eventually(lambda: leader.feed_connected, what="leader subscribed")
        await eventually(lambda: standby.feed_connected, what="standby subscribed")
        hour_ago = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 3600))
        payload = orjson.dumps({"symbol": "OLD", "last_price": 1.0, "updated_at": hour_ago})
        await aredis.publish(f"{worker_config.input_prefix}market_data:OLD", payload)
        await eventually(lambda: standby.state.entity("market_data", "OLD"), what="standby has it")
        # when the leader stops (releasing the lease) and the standby takes over, no input since
        stop_leader.set()
        await asyncio.wait_for(leading, timeout=15)
        await eventually(standby.leading.is_set, timeout=10, what="standby leads")

        # then the new leader's heartbeat says no timestamped input came: the hour-old lag
        # was the old leader's to report, not the new one's first beat
        async def standbys_beat() -> Any:
            raw = await aredis.get(standby.names.heartbeat)
            beat = orjson.loads(raw) if raw else None
            return beat if beat and beat["worker"] == "standby" else None

        beat = await eventually(standbys_beat, timeout=5, what="the new leader's heartbeat")
        assert beat["ingest_lag_s"] is None
    finally:
        stop_leader.set()
        stop_standby.set()
        await asyncio.gather(leading, standing_by)
