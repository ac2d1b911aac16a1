"""The hot standby's bounded buffer of history rows (aggregation/standby.py) and the content key
every worker derives alike (aggregation/history_log.py)."""

from __future__ import annotations

import orjson

from aggregation.history_log import content_key, row_key
from aggregation.standby import StandbyBuffer, unappended
from history.stream_rows import row_key_parts


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def tick(n: int) -> dict[str, object]:
    return {"symbol": "BTC", "last_price": float(n), "updated_at": f"2026-01-05T09:00:{n:02d}Z"}


def test_the_buffer_keeps_the_rows_of_the_window_only() -> None:
    clock = Clock()
    buffer = StandbyBuffer(window_s=30, max_rows=1000, clock=clock, wall_clock=lambda: 1.7e9)
    # given rows recorded over 40 s, one a second
    for n in range(40):
        buffer.record("market_data", n, tick(n))
        clock.now += 1
    # then only the last 30 s are kept, oldest first, with their received time
    rows = buffer.take()
    assert [record["last_price"] for _, _, _, record in rows] == [float(n) for n in range(10, 40)]
    assert {(channel, received) for _, channel, received, _ in rows} == {("market_data", 1.7e9)}
    # and taking them empties the buffer
    assert len(buffer) == 0


def test_rows_expire_while_nothing_new_arrives() -> None:
    clock = Clock()
    buffer = StandbyBuffer(window_s=30, max_rows=1000, clock=clock)
    buffer.record("market_data", 1, tick(1))
    clock.now += 29.9
    assert len(buffer) == 1
    clock.now += 0.2
    assert len(buffer) == 0
    assert buffer.take() == []


def test_the_buffer_is_capped_in_rows_the_oldest_going_first() -> None:
    buffer = StandbyBuffer(window_s=30, max_rows=5, clock=Clock())
    for n in range(12):
        buffer.record("market_data", n, tick(n))
    rows = buffer.take()
    assert [record["last_price"] for _, _, _, record in rows] == [7.0, 8.0, 9.0, 10.0, 11.0]


def test_each_row_carries_the_content_key_the_leader_derives() -> None:
    buffer = StandbyBuffer(window_s=30, max_rows=10, clock=Clock())
    buffer.record("positions", 3, {"symbol": "BTC", "quantity": 0.0})
    ((n, channel, _, record),) = buffer.take()
    assert n == content_key(channel, orjson.dumps(record))
    # a row key the recorder accepts, with the one content writer
    parts = row_key_parts(row_key(n))
    assert parts == (1, n)


def test_the_content_key_tells_inputs_apart() -> None:
    base = orjson.dumps(tick(1))
    assert content_key("market_data", base) == content_key("market_data", orjson.dumps(tick(1)))
    assert content_key("market_data", base) != content_key("positions", base)
    assert content_key("market_data", base) != content_key("market_data", orjson.dumps(tick(2)))
    assert 0 <= content_key("market_data", base) < 2**63


def test_unappended_keeps_the_rows_no_leader_appended_in_order() -> None:
    rows = [(n, "market_data", 1.7e9, tick(n)) for n in (5, 6, 7, 8)]
    assert [row[0] for row in unappended(rows, {6, 8, 99})] == [5, 7]
    assert unappended(rows, set()) == rows


def test_the_history_log_counts_repeats_the_recorder_stores_once() -> None:
    import redis.asyncio as aioredis

    from aggregation.history_log import HistoryLog

    client = aioredis.Redis()  # never connects: nothing is flushed
    log = HistoryLog(client, stream="s", capacity=100, leader_key="l", owner="o")
    a = {"symbol": "BTC", "last_price": 1.0, "updated_at": "2026-01-05T09:00:00Z"}
    b = {"symbol": "BTC", "last_price": 2.0, "updated_at": "2026-01-05T09:00:00Z"}
    bare = {"symbol": "BTC", "last_price": 1.0}
    for record in (a, b, a, bare, b, bare):  # A, B, A: the same row twice, filed at one time
        log.record("market_data", 1, record)
    # the repeats of a and b count; those of a record without updated_at are new rows
    assert log.stats()["repeats"] == 2
