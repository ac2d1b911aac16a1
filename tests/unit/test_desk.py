"""The demo desk: every record it makes is valid, and its numbers behave like a real desk's."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from aggregation.simulator.desk import Desk
from aggregation.simulator.market import BASE_PRICES
from shared.clock import rfc3339
from shared.core.records import Accepted, Channel, validate_record

RFC3339_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
STATUS_RANK = {"NEW": 0, "PARTIALLY_FILLED": 1, "FILLED": 2, "CANCELED": 2}
STEPS = 400  # enough for every order and position transition to happen many times


def fake_clock(start: float = 1_700_000_000.0, step: float = 0.05) -> Callable[[], float]:
    """A clock that advances `step` seconds per reading, so timestamps move but repeat per run."""
    counter = itertools.count()
    return lambda: start + step * next(counter)


def run(desk: Desk, steps: int = STEPS) -> Iterator[tuple[Channel, dict[str, Any]]]:
    """Drive the desk as the publisher does and yield every record it returns."""
    for _ in range(steps):
        for record in desk.tick_market(7):
            yield Channel.MARKET_DATA, record
        for record in desk.step_orders():
            yield Channel.ORDERS, record
        for record in desk.step_positions():
            yield Channel.POSITIONS, record
        yield Channel.ACCOUNT, desk.account()
        for record in desk.step_strategies():
            yield Channel.STRATEGIES, record


@pytest.fixture
def desk() -> Desk:
    return Desk(symbols=20, seed=7, clock=fake_clock())


def test_every_record_validates(desk: Desk) -> None:
    records = list(run(desk))
    records += [(Channel.MARKET_DATA, r) for r in desk.market_data()]
    records += [(Channel.ORDERS, r) for r in desk.orders_snapshot(100)]
    records += [(Channel.POSITIONS, r) for r in desk.positions()]
    records += [(Channel.STRATEGIES, r) for r in desk.strategies()]
    for channel, record in records:
        result = validate_record(channel, record)
        assert isinstance(result, Accepted), (channel, record, result)
        assert RFC3339_UTC.fullmatch(record["updated_at"]), record
    assert {channel for channel, _ in records} == set(Channel)


def test_symbols_have_realistic_prices_then_synthetic_ones() -> None:
    desk = Desk(symbols=len(BASE_PRICES) + 3, seed=1, clock=fake_clock())
    assert desk.symbols[:3] == ("BTCUSDT", "ETHUSDT", "SOLUSDT")
    assert len(set(desk.symbols)) == len(BASE_PRICES) + 3
    assert all(s.startswith("SYN") for s in desk.symbols[len(BASE_PRICES) :])
    prices = {r["symbol"]: r["last_price"] for r in desk.market_data()}
    assert 50_000 < prices["BTCUSDT"] < 70_000
    assert 2_500 < prices["ETHUSDT"] < 3_500
    assert Desk(symbols=3, seed=1, clock=fake_clock()).symbols == desk.symbols[:3]


def test_market_invariants(desk: Desk) -> None:
    volume: dict[str, float] = {}
    for _ in range(STEPS):
        for tick in desk.tick_market(20):
            assert 0 < tick["bid_price"] < tick["last_price"] < tick["ask_price"], tick
            assert tick["low_24h"] <= tick["last_price"] <= tick["high_24h"], tick
            # a spread of a few basis points, not a random gap
            assert (tick["ask_price"] - tick["bid_price"]) / tick["last_price"] < 0.001, tick
            assert tick["volume_24h"] > volume.get(tick["symbol"], 0.0)
            volume[tick["symbol"]] = tick["volume_24h"]
    assert set(volume) == set(desk.symbols)  # round-robin reaches every symbol


def test_orders_only_move_forward(desk: Desk) -> None:
    last: dict[str, dict[str, Any]] = {}
    seen: set[str] = set()
    for channel, order in run(desk):
        if channel is not Channel.ORDERS:
            continue
        assert re.fullmatch(r"ord-\d{6}", order["id"])
        assert order["side"] in ("BUY", "SELL")
        assert order["type"] in ("LIMIT", "MARKET")
        assert 0 <= order["filled"] <= order["quantity"]
        previous = last.get(order["id"])
        if previous is None:
            assert order["status"] == "NEW"
            assert order["filled"] == 0
        else:
            assert previous["status"] in ("NEW", "PARTIALLY_FILLED"), "updated after the end"
            assert STATUS_RANK[order["status"]] >= STATUS_RANK[previous["status"]]
            assert order["filled"] >= previous["filled"]
            assert order["created_at"] == previous["created_at"]
        if order["status"] == "FILLED":
            assert order["filled"] == order["quantity"]
        last[order["id"]] = order
        seen.add(order["status"])
    assert seen == set(STATUS_RANK)
    assert {o["type"] for o in last.values()} == {"LIMIT", "MARKET"}


def test_positions_follow_the_mark_and_close_with_quantity_zero(desk: Desk) -> None:
    closed: list[dict[str, Any]] = []
    for channel, position in run(desk):
        if channel is not Channel.POSITIONS:
            continue
        if position["quantity"] == 0:
            closed.append(position)
            assert position["unrealized_pnl"] == 0
            continue
        direction = 1 if position["side"] == "LONG" else -1
        assert position["side"] in ("LONG", "SHORT")
        assert position["quantity"] > 0
        expected = (
            direction * (position["mark_price"] - position["entry_price"]) * position["quantity"]
        )
        assert position["unrealized_pnl"] == pytest.approx(expected, abs=1e-5)
        # a long is liquidated below its entry, a short above
        assert direction * (position["entry_price"] - position["liquidation_price"]) > 0
    assert closed, "no position closed in the run"
    open_symbols = {p["symbol"] for p in desk.positions()}
    marks = {r["symbol"]: r["last_price"] for r in desk.market_data()}
    assert all(p["mark_price"] == marks[p["symbol"]] for p in desk.positions())
    assert len(open_symbols) == len(desk.positions())


def test_account_follows_the_positions(desk: Desk) -> None:
    for _ in run(desk, 200):
        pass
    account, positions = desk.account(), desk.positions()
    assert positions, "the run ends with no open position to check against"
    unrealized = sum(p["unrealized_pnl"] for p in positions)
    margin = sum(p["quantity"] * p["mark_price"] for p in positions) / 10
    assert account["unrealized_pnl"] == pytest.approx(unrealized, abs=1e-4)
    assert account["margin_used"] == pytest.approx(margin, abs=1e-4)
    assert account["total_balance"] == pytest.approx(
        sum(account["balances"].values()) + unrealized, abs=1e-4
    )
    assert account["available_balance"] == pytest.approx(
        account["total_balance"] - account["margin_used"], abs=1e-4
    )
    assert account["balances"]["USDT"] == pytest.approx(100_000 + account["realized_pnl"], abs=1e-4)


def test_strategies_trade_with_consistent_counts(desk: Desk) -> None:
    first = desk.strategies()
    assert 3 <= len(first) <= 5
    trades = {s["id"]: 0 for s in first}
    for channel, strategy in run(desk):
        if channel is Channel.STRATEGIES:
            assert strategy["status"] in ("RUNNING", "PAUSED")
            assert 0 <= strategy["win_rate"] <= 1
            assert strategy["trades"] >= trades[strategy["id"]]
            trades[strategy["id"]] = strategy["trades"]
    assert all(count > 0 for count in trades.values())


def test_orders_snapshot_is_the_newest_oldest_first(desk: Desk) -> None:
    for _ in run(desk, 300):
        pass
    snapshot = desk.orders_snapshot(10)
    ids = [order["id"] for order in snapshot]
    assert len(ids) == 10
    assert ids == sorted(ids)
    assert ids[-1] == desk.orders_snapshot(1)[0]["id"]
    assert desk.orders_snapshot(0) == []
    assert len(desk.orders_snapshot(100_000)) <= 1000  # bounded memory


def test_same_seed_same_records_other_seed_other_records() -> None:
    def records(seed: int) -> list[tuple[Channel, dict[str, Any]]]:
        desk = Desk(symbols=8, seed=seed, clock=fake_clock())
        return list(run(desk, 100)) + [(Channel.ORDERS, r) for r in desk.orders_snapshot(50)]

    assert records(42) == records(42)
    assert records(42) != records(43)


def test_rfc3339_is_utc_with_z() -> None:
    assert rfc3339(0) == "1970-01-01T00:00:00.000Z"
    assert rfc3339(1_700_000_000.1234) == "2023-11-14T22:13:20.123Z"
