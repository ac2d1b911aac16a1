"""The trading state: what each record kind does, and what a cadence's take returns."""

from __future__ import annotations

from typing import Any

import pytest

from shared.core.records import Accepted, Channel, validate_record
from shared.core.state import TradingState, Update


def rec(channel: Channel, **fields: Any) -> Accepted:
    result = validate_record(channel, fields)
    assert isinstance(result, Accepted), result
    return result


def md(symbol: str, price: float, **extra: Any) -> Accepted:
    return rec(Channel.MARKET_DATA, symbol=symbol, last_price=price, **extra)


def order(order_id: str, status: str = "NEW", **extra: Any) -> Accepted:
    return rec(
        Channel.ORDERS,
        id=order_id,
        symbol="BTCUSDT",
        side="BUY",
        quantity=1.0,
        status=status,
        **extra,
    )


def position(symbol: str, quantity: float, **extra: Any) -> Accepted:
    return rec(Channel.POSITIONS, symbol=symbol, quantity=quantity, **extra)


@pytest.fixture
def state() -> TradingState:
    return TradingState(cadences=("web", "tui"), max_orders=3)


def test_new_entity_is_sent_whole_then_only_changed_fields(state: TradingState) -> None:
    state.put(md("BTCUSDT", 1.0, bid_price=0.5))
    first = state.take_diff("web")
    assert first.changes == {
        "market_data.BTCUSDT": {"symbol": "BTCUSDT", "last_price": 1.0, "bid_price": 0.5}
    }
    state.put(md("BTCUSDT", 2.0, bid_price=0.5))
    second = state.take_diff("web")
    assert second.changes == {"market_data.BTCUSDT.last_price": 2.0}
    assert (second.base_seq, second.seq) == (first.seq, 2)


def test_a_field_the_new_record_lacks_is_deleted(state: TradingState) -> None:
    state.put(md("BTCUSDT", 1.0, bid_price=0.5))
    state.take_diff("web")
    state.put(md("BTCUSDT", 1.0))
    assert state.take_diff("web").changes == {"market_data.BTCUSDT.bid_price": None}


def test_an_identical_record_changes_nothing(state: TradingState) -> None:
    assert state.put(md("BTCUSDT", 1.0)) is True
    assert state.put(md("BTCUSDT", 1.0)) is False
    assert state.seq == 1


def test_an_integer_replacing_an_equal_float_is_a_change(state: TradingState) -> None:
    state.put(md("BTCUSDT", 1.0, flag=1))
    state.take_diff("web")
    assert state.put(md("BTCUSDT", 1.0, flag=True)) is True
    assert state.take_diff("web").changes == {"market_data.BTCUSDT.flag": True}


def test_position_at_zero_quantity_is_removed(state: TradingState) -> None:
    state.put(position("ETHUSDT", 2.0))
    state.take_diff("web")
    assert state.put(position("ETHUSDT", 0.0)) is True
    assert state.take_diff("web").changes == {"positions.ETHUSDT": None}
    assert state.snapshot(["positions"]) == {"positions": {}}


def test_closing_an_unknown_position_is_a_no_op(state: TradingState) -> None:
    assert state.put(position("ETHUSDT", 0)) is False
    assert state.seq == 0


def test_position_opened_and_closed_between_takes_is_sent_as_deleted(state: TradingState) -> None:
    state.put(position("ETHUSDT", 2.0))
    state.put(position("ETHUSDT", 0.0))
    assert state.take_diff("web").changes == {"positions.ETHUSDT": None}


def test_orders_keep_the_newest_and_are_sent_whole_newest_first(state: TradingState) -> None:
    for order_id in ("o1", "o2", "o3", "o4"):
        state.put(order(order_id))
    ids = [o["id"] for o in state.take_diff("web").changes["orders"]]
    assert ids == ["o4", "o3", "o2"]


def test_an_order_update_keeps_its_place(state: TradingState) -> None:
    for order_id in ("o1", "o2", "o3"):
        state.put(order(order_id))
    state.put(order("o1", status="FILLED"))
    orders = state.snapshot(["orders"])["orders"]
    assert [(o["id"], o["status"]) for o in orders] == [
        ("o3", "NEW"),
        ("o2", "NEW"),
        ("o1", "FILLED"),
    ]


def test_account_is_replaced_whole(state: TradingState) -> None:
    state.put(rec(Channel.ACCOUNT, total_balance=10.0, margin_used=1.0, balances={"USDT": 10.0}))
    assert state.take_diff("web").changes == {
        "account.total_balance": 10.0,
        "account.margin_used": 1.0,
        "account.balances": {"USDT": 10.0},
    }
    state.put(rec(Channel.ACCOUNT, total_balance=11.0, balances={"USDT": 11.0}))
    assert state.take_diff("web").changes == {
        "account.total_balance": 11.0,
        "account.margin_used": None,
        "account.balances": {"USDT": 11.0},
    }
    assert state.snapshot(["account"]) == {
        "account": {"total_balance": 11.0, "balances": {"USDT": 11.0}}
    }


def test_cadences_take_independently(state: TradingState) -> None:
    state.put(md("BTCUSDT", 1.0))
    state.take_diff("tui")
    state.put(md("BTCUSDT", 2.0))
    tui = state.take_diff("tui")
    web = state.take_diff("web")
    assert tui.changes == {"market_data.BTCUSDT.last_price": 2.0}
    assert web.changes == {"market_data.BTCUSDT": {"symbol": "BTCUSDT", "last_price": 2.0}}
    assert (tui.base_seq, web.base_seq) == (1, 0)


def test_empty_take_keeps_seq_and_base(state: TradingState) -> None:
    state.put(md("BTCUSDT", 1.0))
    state.take_diff("web")
    empty = state.take_diff("web")
    assert (empty.base_seq, empty.seq, empty.changes) == (1, 1, {})


def test_snapshot_holds_only_the_asked_channels(state: TradingState) -> None:
    state.put(md("BTCUSDT", 1.0))
    assert state.snapshot(["market_data", "orders"]) == {
        "market_data": {"BTCUSDT": {"symbol": "BTCUSDT", "last_price": 1.0}},
        "orders": [],
    }
    assert set(state.snapshot()) == {"market_data", "orders", "positions", "account", "strategies"}


def test_load_replaces_state_and_starts_every_cadence_at_its_seq(state: TradingState) -> None:
    state.put(md("OLD", 1.0))
    loaded = TradingState(cadences=("x",), max_orders=3)
    loaded.put(md("BTCUSDT", 3.0))
    loaded.put(order("o1"))
    state.load(loaded.snapshot(), seq=41)
    assert state.seq == 41
    assert state.snapshot() == loaded.snapshot()
    assert state.take_diff("web") == Update(base_seq=41, seq=41, changes={})
    state.put(order("o2"))
    update = state.take_diff("tui")
    assert (update.base_seq, update.seq) == (41, 42)
    assert [o["id"] for o in update.changes["orders"]] == ["o2", "o1"]


def test_entity_reads_one_value(state: TradingState) -> None:
    state.put(md("BTCUSDT", 1.0))
    assert state.entity("market_data", "BTCUSDT") == {"symbol": "BTCUSDT", "last_price": 1.0}
    assert state.entity("market_data", "NOPE") is None
    assert state.entity("orders", None) == []


def test_counts(state: TradingState) -> None:
    state.put(md("BTCUSDT", 1.0))
    state.put(order("o1"))
    assert state.counts() == {
        "market_data": 1,
        "orders": 1,
        "positions": 0,
        "account": 0,
        "strategies": 0,
    }


def test_snapshot_keys_are_plain_strings(state: TradingState) -> None:
    # JSON encoders (orjson) refuse str subclasses such as enum members as keys.
    assert all(type(key) is str for key in state.snapshot())


T0 = "2026-11-23T12:00:00Z"
T1 = "2026-11-23T12:00:01.5Z"
T1_ELSEWHERE = "2026-11-23T14:00:01.500+02:00"  # the same instant as T1, written otherwise


@pytest.mark.parametrize(
    "make",
    [
        lambda stamp, v: md("BTCUSDT", v, updated_at=stamp),
        lambda stamp, v: order("o1", status=f"S{v}", updated_at=stamp),
        lambda stamp, v: position("ETHUSDT", v, updated_at=stamp),
        lambda stamp, v: rec(Channel.ACCOUNT, total_balance=v, updated_at=stamp),
        lambda stamp, v: rec(Channel.STRATEGIES, id="s1", status=f"S{v}", updated_at=stamp),
    ],
)
def test_a_record_older_than_the_stored_one_is_stale(make: Any) -> None:
    state = TradingState(cadences=["web"], max_orders=10)
    assert not state.is_stale(make(T1, 2.0))  # nothing stored yet
    state.put(make(T1, 2.0))
    assert state.is_stale(make(T0, 1.0))
    assert not state.is_stale(make(T1_ELSEWHERE, 3.0))  # the same instant: applies
    assert not state.is_stale(make("2026-11-23T12:00:02Z", 3.0))  # newer
    assert not state.is_stale(make(None, 3.0))  # no stamp to compare: the later arrival wins


def test_a_stored_record_without_updated_at_never_makes_a_newer_one_stale() -> None:
    state = TradingState(cadences=["web"], max_orders=10)
    state.put(md("BTCUSDT", 1.0))
    assert not state.is_stale(md("BTCUSDT", 2.0, updated_at=T0))


def test_timestamps_in_forms_python_cannot_read_are_compared_too() -> None:
    state = TradingState(cadences=["web"], max_orders=10)
    state.put(md("BTCUSDT", 1.0, updated_at="2026-11-23t12:00:01z"))
    assert state.is_stale(md("BTCUSDT", 2.0, updated_at="2026-11-23t12:00:00z"))
