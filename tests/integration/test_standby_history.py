"""The history log's appended-keys log and a standby's handover, against real Redis."""

from __future__ import annotations

import time

import orjson
import pytest
import redis.asyncio as aioredis

from aggregation.history_log import HistoryLog, content_key, row_key
from aggregation.standby import StandbyBuffer, appended_keys, unappended
from shared.keys import RedisNames

pytestmark = pytest.mark.integration


def tick(n: int) -> dict[str, object]:
    return {"symbol": "BTC", "last_price": float(n)}  # no updated_at: keyed by content only


def _log(client: aioredis.Redis, names: RedisNames, owner: str, capacity: int) -> HistoryLog:
    return HistoryLog(
        client,
        stream=names.history_stream,
        capacity=capacity,
        leader_key=names.leader,
        owner=owner,
        appended_key=names.history_appended,
        keep_appended_s=30,
    )


async def test_a_standby_hands_over_exactly_what_the_leader_did_not_append(
    aredis: aioredis.Redis, key_prefix: str
) -> None:
    names = RedisNames(key_prefix.rstrip(":"))
    # given a leader that appended ticks 0-9 and died with 10-11 buffered, and a standby that
    # ingested 0-14 (12-14 while nobody led)
    await aredis.set(names.leader, "old")
    old = _log(aredis, names, "old", capacity=1000)
    buffer = StandbyBuffer(window_s=30, max_rows=1000)
    for n in range(15):
        buffer.record("market_data", n, tick(n))
        if n < 12:
            old.record("market_data", n, tick(n))
        if n == 9:
            assert await old.flush() == 0
    # when the standby takes the lease and compares its rows with the appended keys
    await aredis.set(names.leader, "new")
    appended = await appended_keys(aredis, names, window_s=30)
    missed = unappended(buffer.take(), appended)
    new = _log(aredis, names, "new", capacity=1000)
    new.record("market_data", 100, tick(15))  # ingested after the takeover
    assert new.restore(missed, seq=99) == 5
    assert await new.flush() == 0
    # then the stream holds every tick once, in order, the handed-over ones first at their seq
    stream = await aredis.xrange(names.history_stream)
    entries = [orjson.loads(fields[b"r"]) for _, fields in stream]
    assert [e[3]["last_price"] for e in entries] == [float(n) for n in range(16)]
    assert [e[1] for e in entries[10:]] == [99] * 5 + [100]
    assert [e[4] for e in entries] == [
        row_key(content_key("market_data", orjson.dumps(tick(n)))) for n in range(16)
    ]
    # and the appended keys now name all of them
    assert len(await appended_keys(aredis, names, window_s=30)) == 16


async def test_rows_that_did_not_fit_are_not_logged_as_appended(
    aredis: aioredis.Redis, key_prefix: str
) -> None:
    names = RedisNames(key_prefix.rstrip(":"))
    await aredis.set(names.leader, "w")
    log = _log(aredis, names, "w", capacity=1000)
    for _ in range(1000):
        await aredis.xadd(names.history_stream, {"r": b"filler"})
    for n in range(3):
        log.record("market_data", n, tick(n))
    assert await log.flush() == 3  # the stream is full: all three dropped
    assert await appended_keys(aredis, names, window_s=30) == set()


async def test_appended_keys_expire_after_the_window(
    aredis: aioredis.Redis, key_prefix: str
) -> None:
    names = RedisNames(key_prefix.rstrip(":"))
    await aredis.set(names.leader, "w")
    log = _log(aredis, names, "w", capacity=1000)
    log.record("market_data", 1, tick(1))
    await log.flush()
    now = time.time()
    ttl = [await aredis.pttl(names.history_appended(int(now) + d)) for d in (-1, 0)]
    assert max(ttl) > 30_000  # the window plus the margin
    assert max(ttl) <= 35_000
    # a standby looking long after sees none of them
    assert await appended_keys(aredis, names, window_s=30, now=now + 120) == set()
