"""The recorder's unit of work against real Redis and PostgreSQL, in this process.

Rows are appended exactly as the worker appends them (`HistoryLog`, its Lua script and format);
the recorder writes through its own psycopg connection, so the tests use transactional
databases (the rows must be committed for Django's connection to see them).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import orjson
import psycopg
import pytest
import redis
import redis.asyncio as aioredis
from django.db import connection
from django.db.models import Sum
from redis.exceptions import RedisError

from aggregation.history_log import HistoryLog
from history.batch_sql import WRITE_LOCK  # the lock recorders take turns on
from history.batch_writer import BatchWriter
from history.models import HISTORY_MODELS, AccountSnapshot, MarketTick, MinuteCandle, Symbol
from history.partitions import partitions_list
from history.recorder import Recorder, RecorderOptions
from history.selectors import history_list
from history.services import (
    batch_prepare,
    history_rows_write,
    history_rows_write_isolating,
    staging_create,
)
from history.stream_group import GROUP, StreamGroup
from history.stream_rows import StreamRow, parse_entry
from shared.keys import RedisNames
from shared.redis_clients import RedisTarget
from shared.throttled_log import ThrottledLog
from support.processes import free_port, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

Row = tuple[str, int, dict[str, Any]]


def append(redis_url: str, stream: str, rows: list[Row]) -> None:
    """Append rows as the worker does."""

    async def run() -> None:
        client = aioredis.Redis.from_url(redis_url)
        try:
            lease = f"{stream}:writer"  # the fence: appends go in while this holds our id
            await client.set(lease, "test-writer")
            log = HistoryLog(
                client, stream=stream, capacity=1_000_000, leader_key=lease, owner="test-writer"
            )
            for channel, seq, record in rows:
                log.record(channel, seq, record)
            assert await log.flush() == 0
        finally:
            await client.aclose()

    asyncio.run(run())


def database_url() -> str:
    """The test database, for the recorder's own connection."""
    db = connection.settings_dict
    return f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


@pytest.fixture
def stream(key_prefix: str, redis_client: redis.Redis) -> str:
    return RedisNames(key_prefix.rstrip(":")).history_stream


@pytest.fixture
def options(redis_url: str, stream: str) -> RecorderOptions:
    return RecorderOptions(
        redis=RedisTarget(url=redis_url),
        stream=stream,
        dsn=database_url(),
        batch_size=100,
        block_ms=50,
        claim_idle_s=0.2,
    )


@pytest.fixture
def recorder(options: RecorderOptions) -> Iterator[Recorder]:
    made = Recorder(options, consumer="test-recorder")
    yield made
    made.close()


def drain(recorder: Recorder, stop: threading.Event | None = None) -> int:
    """Step until a step finds nothing; return the entries handled."""
    handled = 0
    for _ in range(1000):
        n = recorder.step(stop or threading.Event())
        if n == 0:
            return handled
        handled += n
    raise AssertionError("the stream never drained")


def ticks(n: int, *, start: int = 0) -> list[Row]:
    # Distinct inputs throughout (`start` included): a row's key is a hash of its content, so
    # byte-identical records are one input to the recorder (docs/HISTORY.md, "Exactly once").
    return [
        (
            "market_data",
            start + i + 1,
            {
                "symbol": f"SYM{i % 3}",
                "last_price": 100.0 + i / 7,
                "volume_24h": 1e6 + start + i,
                "updated_at": f"2026-05-01T12:{i // 60 % 60:02d}:{i % 60:02d}.{i:06d}Z",
                "venue": "X",
            },
        )
        for i in range(n)
    ]


ALL_KINDS: list[Row] = [
    (
        "market_data",
        1,
        {"symbol": "BTCUSDT", "last_price": 50100.5, "bid_price": 50100.0, "ask_price": 50101.0,
         "volume_24h": 1234.5, "high_24h": 51000.0, "low_24h": 49000.0,
         "updated_at": "2026-05-01T12:00:00.123456Z"},
    ),
    (
        "orders",
        2,
        {"id": "o-1", "symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "price": 50000.0,
         "quantity": 0.5, "filled": 0.25, "status": "PARTIALLY_FILLED",
         "created_at": "2026-05-01T11:59:00Z", "updated_at": "2026-05-01T12:00:01+02:00",
         "client_tag": "extra"},
    ),
    (
        "positions",
        3,
        {"symbol": "ETHUSDT", "side": "LONG", "quantity": 2.0, "entry_price": 3000.0,
         "mark_price": 3010.0, "unrealized_pnl": 20.0, "realized_pnl": -1.5,
         "liquidation_price": 2500.0, "updated_at": "2026-05-01T12:00:02Z"},
    ),
    (
        "account",
        4,
        {"total_balance": 100000.0, "available_balance": 90000.0, "margin_used": 10000.0,
         "unrealized_pnl": 20.0, "realized_pnl": -1.5, "balances": {"USDT": 90000.0, "BTC": 0.5}},
    ),
    (
        "strategies",
        5,
        {"id": "mm-1", "name": "market maker", "status": "RUNNING", "pnl": 12.5, "trades": 42,
         "win_rate": 0.6, "updated_at": "2026-05-01T12:00:03Z"},
    ),
]  # fmt: skip


EXTRA = {
    "orders": {
        "client_tag": "extra",
        "created_at": "2026-05-01T11:59:00Z",
        "updated_at": "2026-05-01T12:00:01+02:00",
    }
}


def stored(model: Any) -> list[dict[str, Any]]:
    return list(model._default_manager.order_by("time", "writer_id", "n").values())


def symbol_names() -> dict[int, str]:
    return dict(Symbol.objects.values_list("id", "name"))


def test_every_kind_is_stored_with_equal_values(
    recorder: Recorder, redis_url: str, stream: str
) -> None:
    # given one change of each kind in the stream
    before = datetime.now(UTC)
    append(redis_url, stream, ALL_KINDS)
    # when the recorder runs
    assert drain(recorder) == 5
    # then each table holds its record: typed columns equal to the record's fields, and in
    # `extra` only what they cannot give back as written (an extra field, times spelled with
    # an offset or without fraction digits where the column cannot say so)
    names = symbol_names()
    for channel, seq, record in ALL_KINDS:
        model = HISTORY_MODELS[channel]
        (row,) = stored(model)
        assert row["seq"] == seq
        assert row["extra"] == EXTRA.get(channel)
        for field in model.typed_fields():
            value = record.get(model.record_key(field.name))
            if isinstance(value, str) and field.get_internal_type() == "DateTimeField":
                value = datetime.fromisoformat(value)
            assert row[field.attname] == value, field.name
        if model.key_field is not None:
            assert names[row["symbol_id"]] == record[model.key_record]
        updated = record.get("updated_at")
        if updated:
            assert row["time"] == datetime.fromisoformat(updated)
        # and the API gives the record back as it was accepted
        page = history_list(kind=channel, symbol=None, start=None, end=None, before=None, limit=9)
        (item,) = page.items
        received = datetime.fromisoformat(item.pop("received_at"))
        assert before <= received <= datetime.now(UTC)
        assert item == {**record, "seq": seq}
        if not updated:
            assert row["time"] == received
    assert recorder.written == {channel: 1 for channel, _, _ in ALL_KINDS}
    (account,) = stored(AccountSnapshot)
    assert account["balances"] == {"USDT": 90000.0, "BTC": 0.5}


def test_n_rows_in_give_n_rows_out_and_the_stream_is_trimmed(
    recorder: Recorder, redis_url: str, stream: str, redis_client: redis.Redis
) -> None:
    rows = ticks(1234)
    append(redis_url, stream, rows)
    assert redis_client.xlen(stream) == 1234
    drain(recorder)
    found = stored(MarketTick)
    assert len(found) == 1234
    names = symbol_names()
    assert [(r["seq"], names[r["symbol_id"]], r["last_price"]) for r in found] == [
        (seq, rec["symbol"], rec["last_price"]) for _, seq, rec in rows
    ]
    assert MinuteCandle.objects.aggregate(n=Sum("ticks"))["n"] == 1234
    # XLEN counts unrecorded rows only: the worker's cap is about what PostgreSQL lacks
    assert redis_client.xlen(stream) == 0
    assert redis_client.xpending(stream, GROUP)["pending"] == 0


def record_until(recorder: Recorder, condition: Callable[[], object], what: str) -> None:
    """Run recorder steps until `condition` holds."""
    stop = threading.Event()
    wait_until(lambda: recorder.step(stop) >= 0 and condition(), timeout=15, what=what)


def idle_ms(client: redis.Redis, stream: str) -> int:
    """How long the oldest pending entry has waited since its delivery."""
    oldest = client.xpending_range(stream, GROUP, "-", "+", 1)
    return int(oldest[0]["time_since_delivered"]) if oldest else -1


def test_a_replayed_batch_inserts_nothing_and_a_dead_consumers_entries_are_reclaimed(
    recorder: Recorder, options: RecorderOptions, redis_url: str, stream: str,
    redis_client: redis.Redis,
) -> None:  # fmt: skip
    # given a recorder that read a batch, committed it, and died before its XACK
    append(redis_url, stream, ticks(50))
    dead = StreamGroup(redis_client, stream=stream, consumer="dead-recorder")
    dead.ensure()
    rows = [parse_entry(entry_id, fields) for entry_id, fields in dead.read(count=100, block_ms=50)]
    assert len(rows) == 50
    with psycopg.connect(options.dsn) as conn:
        staging_create(conn=conn)
        written, refused = history_rows_write_isolating(
            conn=conn, rows=[row for row in rows if isinstance(row, StreamRow)]
        )
        assert (written, refused) == ({"market_data": 50}, [])
        # when the same rows are written again
        assert history_rows_write(
            conn=conn, rows=[r for r in rows if isinstance(r, StreamRow)]
        ) == {"market_data": 0}
    # and a live recorder reclaims the dead one's entries once they idled claim_idle_s
    wait_until(lambda: idle_ms(redis_client, stream) >= 200, timeout=5, what="idle entries")
    record_until(recorder, lambda: recorder.claimed == 50, "the reclaim")
    # then each entry is in the table once, acknowledged, and trimmed from the stream
    assert MarketTick.objects.count() == 50
    assert MinuteCandle.objects.aggregate(n=Sum("ticks"))["n"] == 50  # not 100 or 150
    assert recorder.written["market_data"] == 0  # replays insert (and count) nothing
    assert redis_client.xlen(stream) == 0
    assert redis_client.xpending(stream, GROUP)["pending"] == 0
    # and the dead consumer's name is reaped once it has nothing pending
    record_until(
        recorder,
        lambda: (
            [c["name"] for c in redis_client.xinfo_consumers(stream, GROUP)] == [b"test-recorder"]
        ),
        "the dead consumer reaped",
    )


def test_malformed_entries_are_acked_and_counted_and_the_rest_recorded(
    recorder: Recorder, redis_url: str, stream: str, redis_client: redis.Redis
) -> None:
    # given good rows around malformed entries and a record PostgreSQL could not store (the
    # worker refuses it at ingest; an entry carrying one anyway is refused by validation)
    append(redis_url, stream, ticks(3))
    redis_client.xadd(stream, {"r": b"{not json"})
    redis_client.xadd(stream, {"other": b"field"})
    redis_client.xadd(stream, {"r": orjson.dumps(["trades", 1, 1.7e9, {}])})
    unstorable = {"id": "s-1", "status": "RUNNING", "note": "nul \u0000 inside"}
    redis_client.xadd(stream, {"r": orjson.dumps(["strategies", 9, 1.7e9, unstorable])})
    append(redis_url, stream, ticks(3, start=3))
    # when the recorder runs
    drain(recorder)
    # then the good rows are written, the others counted by reason, and nothing is left
    assert MarketTick.objects.count() == 6
    assert recorder.malformed == {
        "bad_json": 1,
        "bad_fields": 1,
        "unknown_channel": 1,
        "record_unrepresentable_string": 1,
    }
    assert redis_client.xlen(stream) == 0
    assert redis_client.xpending(stream, GROUP)["pending"] == 0


def test_a_row_postgresql_refuses_is_isolated_and_the_rest_written(
    options: RecorderOptions,
) -> None:
    # given a batch with one row jsonb cannot store (NUL), built past the validation
    good = [
        StreamRow(1, i, "market_data", i, datetime.now(UTC), '{"symbol":"A","last_price":1}')
        for i in range(5)
    ]
    bad = StreamRow(2, 0, "strategies", 9, datetime.now(UTC), '{"id":"s","status":"\\u0000"}')
    with psycopg.connect(options.dsn) as conn:
        staging_create(conn=conn)
        # when it is written
        written, refused = history_rows_write_isolating(conn=conn, rows=[*good[:2], bad, *good[2:]])
    # then only that row is refused, with the database's reason
    assert written == {"market_data": 5}
    assert [row for row, _ in refused] == [bad]
    assert "UntranslatableCharacter" in refused[0][1]


def test_postgresql_unreachable_keeps_the_batch_pending_until_it_is_written(
    options: RecorderOptions, redis_url: str, stream: str, redis_client: redis.Redis
) -> None:
    # given a recorder whose PostgreSQL refuses connections
    closed = replace(options, dsn=f"postgres://postgres@127.0.0.1:{free_port()}/nowhere")
    append(redis_url, stream, ticks(20))
    failing = Recorder(closed, consumer="failing")
    stop = threading.Event()
    try:
        stop.set()  # one attempt, then give up as on SIGTERM
        assert failing.step(stop) == 0
        assert failing.write_failures == 1
    finally:
        failing.close()
    # then nothing was acked or trimmed
    assert redis_client.xpending(stream, GROUP)["pending"] == 20
    assert redis_client.xlen(stream) == 20
    # and when PostgreSQL is reachable, every row is written
    working = Recorder(options, consumer="working")
    try:
        wait_until(lambda: idle_ms(redis_client, stream) >= 200, timeout=5, what="idle entries")
        record_until(working, lambda: redis_client.xlen(stream) == 0, "the backlog recorded")
    finally:
        working.close()
    assert MarketTick.objects.count() == 20


def test_a_vanished_stream_and_group_are_recreated(
    recorder: Recorder, redis_url: str, stream: str, redis_client: redis.Redis
) -> None:
    append(redis_url, stream, ticks(2))
    drain(recorder)
    redis_client.delete(stream)  # Redis restarted empty, or the key was flushed
    append(redis_url, stream, ticks(2, start=2))
    record_until(recorder, lambda: MarketTick.objects.count() == 4, "rows after the loss")


class ReplyCuttingProxy:
    """A TCP proxy to Redis on loopback that, when armed, cuts the connection as the next reply
    arrives from Redis: the command ran, but its client never hears so (a lost reply)."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.armed = False
        self.cuts = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> ReplyCuttingProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)

        async def pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter, *, replies: bool):
            while data := await source.read(65536):
                if replies and self.armed:
                    self.armed = False
                    self.cuts += 1
                    break
                sink.write(data)
                await sink.drain()
            writer.close()
            up_writer.close()

        await asyncio.gather(
            pump(reader, up_writer, replies=False),
            pump(up_reader, writer, replies=True),
            return_exceptions=True,
        )


def test_a_retried_append_after_a_lost_reply_records_each_row_once(
    recorder: Recorder, redis_url: str, stream: str, redis_client: redis.Redis, key_prefix: str
) -> None:
    leader = RedisNames(key_prefix.rstrip(":")).leader
    redis_client.set(leader, b"writer")
    rows = ticks(10)

    async def write_through_a_lossy_link() -> None:
        url = urlsplit(redis_url)
        async with ReplyCuttingProxy((url.hostname or "127.0.0.1", url.port or 6379)) as proxy:
            client = aioredis.Redis.from_url(f"redis://127.0.0.1:{proxy.port}{url.path}")
            try:
                log = HistoryLog(
                    client, stream=stream, capacity=1_000_000, leader_key=leader, owner="writer"
                )
                log.record(*rows[0])
                await log.flush()  # the script is loaded: the next call is the append itself
                # given an append whose reply is lost after Redis ran it
                for row in rows[1:]:
                    log.record(*row)
                proxy.armed = True
                # when the writer retries until the rows are in (as the worker's flush does)
                for _ in range(5):
                    with contextlib.suppress(RedisError):
                        await log.flush()
                    if not log.buffered:
                        break
                assert proxy.cuts == 1
            finally:
                await client.aclose()

    asyncio.run(write_through_a_lossy_link())
    assert redis_client.xlen(stream) > len(rows)  # the stream did get some rows twice
    # then the recorder writes each row once
    drain(recorder)
    assert MarketTick.objects.count() == len(rows)
    assert MinuteCandle.objects.aggregate(n=Sum("ticks"))["n"] == len(rows)


def test_the_recorder_creates_the_coming_days_partitions_ahead(
    recorder: Recorder, redis_url: str, stream: str
) -> None:
    # given a recorder that has written one batch
    append(redis_url, stream, ticks(1))
    drain(recorder)
    # then every table has today's partition and the next two days', before any row needs them
    today = datetime.now(UTC).date()
    for model in HISTORY_MODELS.values():
        days = {day for _, day in partitions_list(model._meta.db_table)}
        assert {today + timedelta(days=d) for d in range(3)} <= days, model.__name__


def test_two_recorders_share_the_stream_and_record_each_row_once(
    options: RecorderOptions, redis_url: str, stream: str, redis_client: redis.Redis
) -> None:
    # given rows in the stream, a batch of them delivered twice (a reclaim racing its owner)
    rows = ticks(3000)
    append(redis_url, stream, rows)
    twice = parse_entries(redis_client.xrange(stream, count=200))
    # when two recorders drain it at the same time, and a copy of one batch is written by a
    # third connection meanwhile
    small = dataclasses.replace(options, batch_size=50)
    recorders = [Recorder(small, consumer=f"recorder-{i}") for i in range(2)]
    stop = threading.Event()
    threads = [threading.Thread(target=r.run, args=(stop,)) for r in recorders]
    try:
        with psycopg.connect(options.dsn) as conn:
            # Both must take part however the threads are scheduled: this connection holds the
            # recorders' write lock until each has been handed a batch and waits for the lock.
            staging_create(conn=conn)
            conn.execute(WRITE_LOCK)  # held until the commit below
            history_rows_write(conn=conn, rows=twice)
            for thread in threads:
                thread.start()

            def both_hold_a_batch() -> bool:
                try:
                    consumers = redis_client.xinfo_consumers(stream, GROUP)
                except redis.ResponseError:  # the recorders have not made the group yet
                    return False
                return len(consumers) == 2 and all(c["pending"] for c in consumers)

            wait_until(both_hold_a_batch, timeout=30, what="each recorder handed a batch")
            conn.commit()
        wait_until(
            lambda: MarketTick.objects.count() >= len(rows) and redis_client.xlen(stream) == 0,
            timeout=60,
            what="both recorders drained the stream",
        )
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    # then each row is stored once, both took part, and every tick is in the candles once
    assert MarketTick.objects.count() == len(rows)
    assert all(r.batches > 0 for r in recorders)
    assert sum(sum(r.written.values()) for r in recorders) == len(rows) - len(twice)
    assert MinuteCandle.objects.aggregate(n=Sum("ticks"))["n"] == len(rows)


def parse_entries(entries: list[tuple[bytes, dict[bytes, bytes]]]) -> list[StreamRow]:
    parsed = [parse_entry(entry_id, fields) for entry_id, fields in entries]
    return [row for row in parsed if isinstance(row, StreamRow)]


def test_two_writers_of_the_same_rows_at_once_insert_them_once(options: RecorderOptions) -> None:
    # given a batch written, not yet committed, on one connection (a recorder mid-batch)
    now = datetime.now(UTC)
    record = '{"symbol": "RACE", "last_price": 1.5}'
    rows = [StreamRow(1, i, "market_data", i, now, record, f"abc-{i}") for i in range(1, 52)]
    with psycopg.connect(options.dsn) as first, psycopg.connect(options.dsn) as second:
        staging_create(conn=first)
        staging_create(conn=second)
        # (the symbol and the writer already known: their dictionary inserts wait for nothing)
        assert history_rows_write(conn=first, rows=rows[:1]) == {"market_data": 1}
        rows = rows[1:]
        first.execute("SELECT 1")  # its transaction: the write below is a savepoint in it
        assert history_rows_write(conn=first, rows=rows) == {"market_data": 50}
        # when another connection writes the same rows meanwhile (a reclaim racing the owner)
        result: dict[str, int] = {}
        racer = threading.Thread(
            target=lambda: result.update(history_rows_write(conn=second, rows=rows))
        )
        racer.start()
        pid = second.info.backend_pid
        with psycopg.connect(options.dsn, autocommit=True) as watcher:
            wait_until(
                lambda: (
                    not racer.is_alive()
                    or watcher.execute(
                        "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = %s",
                        [pid],
                    ).fetchone()
                    == (True,)
                ),
                timeout=10,
                what="the second write waits, or is done",
            )
        first.commit()
        racer.join(timeout=10)
    # then the rows are stored once: the second writer waited, then found them
    assert result == {"market_data": 0}
    assert MarketTick.objects.count() == 51


class Crash(Exception):
    """The recorder process dying at a chosen point (nothing after it runs)."""


def test_a_crash_between_overlapped_batches_loses_and_duplicates_nothing(
    recorder: Recorder, options: RecorderOptions, redis_url: str, stream: str,
    redis_client: redis.Redis,
) -> None:  # fmt: skip
    # given three batches in the stream, and a recorder that dies on acknowledging its second
    # batch: committed, not acked, while it holds the third, read and split meanwhile
    rows = ticks(300)
    append(redis_url, stream, rows)
    acks: list[int] = []
    ack = recorder.group.ack

    def ack_then_die(ids: list[bytes]) -> None:
        acks.append(len(ids))
        if len(acks) == 2:
            raise Crash
        ack(ids)

    recorder.group.ack = ack_then_die  # type: ignore[method-assign]
    with pytest.raises(Crash):
        recorder.step(threading.Event())
    recorder.close()
    assert acks == [100, 100]
    assert MarketTick.objects.count() == 200  # batches 1 and 2 committed
    # the overlap: batch 3 had been read while batch 2 was written, so both are pending
    assert redis_client.xpending(stream, GROUP)["pending"] == 200
    # when another recorder takes over what the dead one left pending
    heir = Recorder(options, consumer="heir")
    try:
        wait_until(lambda: idle_ms(redis_client, stream) >= 200, timeout=5, what="idle entries")
        record_until(heir, lambda: redis_client.xlen(stream) == 0, "the takeover")
    finally:
        heir.close()
    # then every row is stored once and counted once in the candles, nothing is pending, and
    # the replayed batch inserted nothing
    found = stored(MarketTick)
    assert sorted(r["seq"] for r in found) == [seq for _, seq, _ in rows]
    assert MinuteCandle.objects.aggregate(n=Sum("ticks"))["n"] == 300
    assert heir.claimed == 200
    assert heir.written["market_data"] == 100
    assert redis_client.xpending(stream, GROUP)["pending"] == 0


def test_shutdown_gives_up_a_write_retrying_against_an_unreachable_postgresql() -> None:
    # given a batch handed to the writer's thread, retrying while PostgreSQL refuses connections
    writer = BatchWriter(
        f"postgres://postgres@127.0.0.1:{free_port()}/nowhere",
        throttled=ThrottledLog(logging.getLogger("test"), interval_s=10),
    )
    rows = [StreamRow(1, 0, "market_data", 1, datetime.now(UTC), '{"symbol":"A","last_price":1}')]
    stop = threading.Event()  # not set until the end (so that a failure cannot hang the run)
    future = writer.submit(batch_prepare(rows), stop)
    try:
        wait_until(lambda: writer.failures >= 2, timeout=10, what="the write retried")
        # when the writer is shut down (the recorder leaving on an error)
        stopping = threading.Thread(target=writer.shutdown, daemon=True)
        stopping.start()
        stopping.join(timeout=5)
        # then it returns without waiting for PostgreSQL, and the batch was not written
        assert not stopping.is_alive()
        assert future.result(timeout=0) is None
    finally:
        stop.set()
