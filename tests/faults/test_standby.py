"""The hot standby loses nothing: input published while the leader is dead is in the state and
in history exactly once (issue 14, part 3).

Two workers, a web process and the recorder on a Redis of the test's own and a database of its
own, no simulator: the test is the only producer, so every row it counts is its own.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
from django.conf import settings

from shared.core.changes import apply_changes
from support.processes import scratch_database, wait_until
from tests.e2e.stack import Stack, connect, decode
from tests.faults.test_faults import PrivateRedis, leader, private_redis  # noqa: F401

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.faults]

GAP_TICKS = 100
BEFORE_TICKS = 50
# The bound on updates resuming after a SIGKILL of the leader.
FAILOVER_BUDGET_S = 2.0
_T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


@pytest.fixture
def pair(private_redis: PrivateRedis, tmp_path: Path) -> Iterator[Stack]:  # noqa: F811
    """Two workers (the first leads), one web process and the recorder; no simulator."""
    stack = Stack(redis_url=private_redis.url, log_dir=tmp_path)
    db = settings.DATABASES["default"]
    server = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}"
    with scratch_database(server, f"standby_{int(time.time() * 1000)}") as database_url:
        stack.env["DASHBOARD_DATABASE_URL"] = database_url
        try:
            migrate = stack.start("migrate", "migrate")
            assert migrate.process.wait(timeout=120) == 0, migrate.output()
            migrate.terminate()
            stack.processes.remove(migrate)
            stack.start_worker("worker-1")
            wait_until(lambda: leader(stack), timeout=30, what="a leader")
            stack.start_worker("worker-2")
            stack.start_web("web-1")
            stack.start("run_recorder", "recorder")
            yield stack
        finally:
            stack.stop()


def tick(symbol: str, n: int, *, stamped: bool = True) -> dict[str, Any]:
    record: dict[str, Any] = {"symbol": symbol, "last_price": 100.0 + n}
    if stamped:
        record["updated_at"] = (_T0 + timedelta(milliseconds=n)).isoformat().replace("+00:00", "Z")
    return record


def position(quantity: float, n: int) -> dict[str, Any]:
    stamp = (_T0 + timedelta(seconds=n)).isoformat().replace("+00:00", "Z")
    return {"symbol": "GAPUSDT", "quantity": quantity, "side": "LONG", "updated_at": stamp}


def _query(dsn: str, statement: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn, connect_timeout=2) as conn:
        return list(conn.execute(statement, params).fetchall())


def _ticks_by_key(dsn: str, symbol: str) -> list[tuple[Any, ...]]:
    """(writer_id, n, count) of `symbol`'s recorded ticks, one row per dedupe key."""
    return _query(
        dsn,
        "SELECT t.writer_id, t.n, count(*) FROM history_markettick t "
        "JOIN history_symbol s ON s.id = t.symbol_id WHERE s.name = %s "
        "GROUP BY t.writer_id, t.n",
        symbol,
    )


def _positions(dsn: str) -> list[tuple[Any, ...]]:
    return _query(
        dsn,
        "SELECT p.quantity, count(*) FROM history_positionsnapshot p "
        "JOIN history_symbol s ON s.id = p.symbol_id WHERE s.name = 'GAPUSDT' "
        "GROUP BY p.quantity ORDER BY p.quantity",
    )


def _shared(stack: Stack, channel: str, key: str) -> Any:
    raw = stack.redis.hget(f"{stack.prefix}:state:{channel}", key)
    return None if raw is None else orjson.loads(raw)


async def test_input_during_a_failover_is_in_the_state_and_in_history_once(pair: Stack) -> None:
    stack = pair
    dsn = stack.env["DASHBOARD_DATABASE_URL"]
    first = leader(stack)
    old = next(p for p in stack.processes if p.log_path.name == "worker-1.log")
    # given an open position and ticks the leader has recorded (some without updated_at, whose
    # history time is each worker's own receive time)
    stack.publish("positions", "GAPUSDT", position(2.0, 0))
    for n in range(BEFORE_TICKS):
        stack.publish("market_data", "GAPUSDT", tick("GAPUSDT", n))
        stack.publish("market_data", "BAREUSDT", tick("BAREUSDT", n, stamped=False))
    wait_until(
        lambda: (
            len(_ticks_by_key(dsn, "GAPUSDT")) == BEFORE_TICKS
            and len(_ticks_by_key(dsn, "BAREUSDT")) == BEFORE_TICKS
            and _positions(dsn)
        ),
        timeout=30,
        what="the leader's rows in history",
    )
    async with connect(stack.ws_url(type="tui")) as ws:
        snapshot = decode(await ws.recv())
        assert snapshot["data"]["positions"]["GAPUSDT"]["quantity"] == 2.0
        state = snapshot["data"]
        seq_before = stack.seq()
        # when the leader is killed and, before anyone leads again, the position is closed
        # and 100 ticks are published
        killed = time.monotonic()
        old.kill()
        stack.publish("positions", "GAPUSDT", position(0, 1))
        for n in range(BEFORE_TICKS, BEFORE_TICKS + GAP_TICKS):
            stack.publish("market_data", "GAPUSDT", tick("GAPUSDT", n))
        assert leader(stack) == first, "the input must be published before the takeover"
        # then updates resume within the budget and bring the client to the new state
        resumed = None
        while True:
            frame = decode(await asyncio.wait_for(ws.recv(), 10))
            if frame["type"] == "update" and frame["seq"] > seq_before:
                resumed = resumed or time.monotonic() - killed
                apply_changes(state, frame["changes"])
                if (
                    "GAPUSDT" not in state["positions"]
                    and state["market_data"]["GAPUSDT"]["last_price"]
                    == 100.0 + BEFORE_TICKS + GAP_TICKS - 1
                ):
                    break
            elif frame["type"] == "snapshot":
                state = frame["data"]
        print(f"updates resumed {resumed:.2f} s after the SIGKILL of the leader")
        assert resumed is not None
        assert resumed < FAILOVER_BUDGET_S
        # and the client holds exactly what a client connecting now gets
        async with connect(stack.ws_url(type="tui")) as fresh:
            assert decode(await fresh.recv())["data"] == state
    assert leader(stack) not in (None, first)
    # the shared snapshot has it too
    assert _shared(stack, "positions", "GAPUSDT") is None
    assert _shared(stack, "market_data", "GAPUSDT")["last_price"] == 100.0 + 149
    # and history holds every tick and both position records exactly once
    wait_until(
        lambda: (
            len(_ticks_by_key(dsn, "GAPUSDT")) >= BEFORE_TICKS + GAP_TICKS
            and len(_positions(dsn)) == 2
        ),
        timeout=30,
        what="the gap's rows in history",
    )
    survivor = next(p for p in stack.processes if p.log_path.name == "worker-2.log")
    survivor.terminate()  # its last rows flushed, the recorder drains the stream
    wait_until(
        lambda: stack.redis.xlen(f"{stack.prefix}:history") == 0,
        timeout=30,
        what="the stream to drain",
    )
    gap = _ticks_by_key(dsn, "GAPUSDT")
    bare = _ticks_by_key(dsn, "BAREUSDT")
    assert len(gap) == BEFORE_TICKS + GAP_TICKS
    assert {count for _, _, count in gap} == {1}
    assert len(bare) == BEFORE_TICKS
    assert {count for _, _, count in bare} == {1}
    assert _positions(dsn) == [(0.0, 1), (2.0, 1)]
