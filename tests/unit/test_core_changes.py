"""apply_changes: the diff rules of contract section 4."""

from __future__ import annotations

from typing import Any

import pytest

from shared.core.changes import ChangeConflict, apply_changes


def base() -> dict[str, Any]:
    return {
        "market_data": {"BTCUSDT": {"symbol": "BTCUSDT", "last_price": 1.0}},
        "orders": [{"id": "o1"}],
        "positions": {"ETHUSDT": {"symbol": "ETHUSDT", "quantity": 1.0}},
        "account": {"total_balance": 5.0},
        "strategies": {},
    }


def test_a_path_replaces_the_value_there() -> None:
    snapshot = apply_changes(base(), {"market_data.BTCUSDT.last_price": 2.0})
    assert snapshot["market_data"]["BTCUSDT"] == {"symbol": "BTCUSDT", "last_price": 2.0}


def test_null_deletes_the_key() -> None:
    snapshot = apply_changes(base(), {"positions.ETHUSDT": None, "account.total_balance": None})
    assert snapshot["positions"] == {}
    assert snapshot["account"] == {}


def test_deleting_something_absent_is_harmless() -> None:
    snapshot = apply_changes(base(), {"positions.XRPUSDT": None, "positions.XRPUSDT.mark": None})
    assert snapshot == base()


def test_lists_are_replaced_whole() -> None:
    snapshot = apply_changes(base(), {"orders": [{"id": "o2"}, {"id": "o1"}]})
    assert snapshot["orders"] == [{"id": "o2"}, {"id": "o1"}]


def test_a_new_entity_arrives_whole() -> None:
    entity = {"symbol": "SOLUSDT", "last_price": 150.0}
    snapshot = apply_changes(base(), {"market_data.SOLUSDT": entity})
    assert snapshot["market_data"]["SOLUSDT"] == entity


def test_records_are_copied_not_mutated() -> None:
    snapshot = base()
    record = snapshot["market_data"]["BTCUSDT"]
    apply_changes(snapshot, {"market_data.BTCUSDT.last_price": 9.0})
    assert record == {"symbol": "BTCUSDT", "last_price": 1.0}
    assert snapshot["market_data"]["BTCUSDT"]["last_price"] == 9.0


@pytest.mark.parametrize(
    "changes",
    [
        {"market_data.NOPE.last_price": 1.0},
        {"orders.o1.status": "FILLED"},
        {"nothing.here": 1},
    ],
)
def test_setting_below_a_missing_parent_is_a_conflict(changes: dict[str, Any]) -> None:
    with pytest.raises(ChangeConflict):
        apply_changes(base(), changes)


def test_changes_apply_in_order() -> None:
    snapshot = apply_changes(
        base(), {"positions.SOLUSDT": {"symbol": "SOLUSDT"}, "positions.SOLUSDT.quantity": 3.0}
    )
    assert snapshot["positions"]["SOLUSDT"] == {"symbol": "SOLUSDT", "quantity": 3.0}
