"""Property tests of the hot standby's takeover (issue 14): the diff between the shared
snapshot another worker wrote and the standby's own state, and the state rebased onto it.

For random old and new states: applying `snapshot_diff(old, new)` to old gives new; and once
the new state is rebased onto the old one's seq, every cadence's next update (whatever was
ingested meanwhile) brings a client at that seq to the new state exactly, at a seq past it.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.core.changes import apply_changes, identical, snapshot_diff
from shared.core.records import Accepted
from shared.core.state import TradingState
from tests.unit.core_records_strategies import accepted_records

CADENCES = ("web", "tui", "mirror")

records = st.lists(accepted_records, max_size=40)
# JSON values whose equality Python blurs (1 == 1.0 == True) must still differ in a diff.
scalars = st.one_of(
    st.sampled_from([0, 1, 1.0, True, False, "1", ""]),
    st.floats(allow_nan=False),
    st.text(max_size=3),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=2) | st.dictionaries(st.text(max_size=2), inner),
    max_leaves=4,
)
keys = st.text("abc_-XY9", min_size=1, max_size=3)
snapshots = st.fixed_dictionaries(
    {
        "market_data": st.dictionaries(keys, st.dictionaries(keys, json_values, max_size=3)),
        "orders": st.lists(st.dictionaries(keys, json_values, max_size=3), max_size=3),
        "positions": st.dictionaries(keys, st.dictionaries(keys, json_values, max_size=3)),
        "account": st.dictionaries(keys, json_values, max_size=4),
        "strategies": st.dictionaries(keys, st.dictionaries(keys, json_values, max_size=3)),
    }
)


def _state(applied: list[Accepted]) -> TradingState:
    state = TradingState(cadences=CADENCES, max_orders=3)
    for accepted in applied:
        if not state.is_stale(accepted):
            state.put(accepted)
    return state


@pytest.mark.slow
@settings(max_examples=200, deadline=None)
@given(snapshots, snapshots)
def test_the_diff_brings_old_to_new(old: dict[str, Any], new: dict[str, Any]) -> None:
    # when the diff of two snapshots is applied to the first
    changes = snapshot_diff(old, new)
    result = apply_changes(copy.deepcopy(old), changes)
    # then it is the second, value for value and type for type
    assert identical(result, new)
    # and it is empty exactly when they are the same
    assert (changes == {}) == identical(old, new)


@settings(max_examples=300, deadline=None)
@given(records, records, records, records, st.integers(0, 10**6))
def test_a_rebased_state_brings_a_client_at_the_shared_seq_to_it(
    common: list[Accepted],
    leader_only: list[Accepted],
    standby_only: list[Accepted],
    after: list[Accepted],
    jump: int,
) -> None:
    # given the old leader's state as the shared snapshot holds it, at its seq S, and a
    # standby's state that ingested the same input, some of it in another order or not at all
    old = _state(common + leader_only)
    shared = copy.deepcopy(old.snapshot())
    shared_seq = old.seq + jump
    standby = _state(standby_only + common)
    # when the standby takes over and ingests more before its first tick
    standby.rebase(shared_seq, snapshot_diff(shared, standby.snapshot()))
    for accepted in after:
        if not standby.is_stale(accepted):
            standby.put(accepted)
    # then each cadence's update applies to the shared snapshot and gives the standby's state
    for cadence in CADENCES:
        update = standby.take_diff(cadence)
        assert update.base_seq == shared_seq
        client = apply_changes(copy.deepcopy(shared), update.changes)
        assert identical(client, standby.snapshot()), cadence
        # at a seq past S whenever there is something to send, and at S when there is not
        if update.changes:
            assert update.seq > shared_seq
        else:
            assert update.seq == shared_seq
    # and the updates after it continue from there
    follow_up = standby.take_diff("web")
    assert follow_up.base_seq == update.seq


def test_the_diff_is_by_entity() -> None:
    old = {
        "market_data": {"BTC": {"symbol": "BTC", "last_price": 1.0}, "ETH": {"symbol": "ETH"}},
        "orders": [{"id": "o1"}],
        "positions": {"BTC": {"symbol": "BTC", "quantity": 2.0}},
        "account": {"total_balance": 10.0, "margin_used": 1.0},
        "strategies": {},
    }
    new = {
        "market_data": {"BTC": {"symbol": "BTC", "last_price": 1}, "ETH": {"symbol": "ETH"}},
        "orders": [{"id": "o1"}],
        "positions": {},
        "account": {"total_balance": 10.0},
        "strategies": {"s1": {"id": "s1", "status": "RUNNING"}},
    }
    assert snapshot_diff(old, new) == {
        "market_data.BTC": {"symbol": "BTC", "last_price": 1},  # 1 is not 1.0 on the wire
        "positions.BTC": None,
        "account.margin_used": None,
        "strategies.s1": {"id": "s1", "status": "RUNNING"},
    }
