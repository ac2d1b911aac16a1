"""compose_changes: two consecutive updates as one (conflation in the web process's fan-out).

The property: applying the merge equals applying the first and then the second, on any snapshot
both apply to (arbitrary paths and values); and on the worker's own updates, a merge of any run
of consecutive updates of a cadence brings every snapshot taken in its interval to the state at
its end (contract 4.1: a client at `base_seq <= S < seq` may apply it).
"""

from __future__ import annotations

import copy
import functools
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.core.changes import apply_changes, compose_changes
from shared.core.records import Accepted
from shared.core.state import TradingState, Update
from tests.unit.core_records_strategies import accepted_records

# A small alphabet, so that paths collide, nest and cover each other often.
segments = st.sampled_from(["a", "b", "c", ""])
paths = st.lists(segments, min_size=1, max_size=3).map(".".join)
leaves = st.one_of(st.none(), st.integers(-3, 3), st.lists(st.integers(0, 2), max_size=2))
values = st.recursive(
    leaves, lambda inner: st.dictionaries(segments, inner, max_size=3), max_leaves=6
)
changes = st.dictionaries(paths, values, max_size=6)
# Mostly full trees of the alphabet, so that most pairs of updates apply (a path below a missing
# parent is a conflict, and such a pair says nothing about the merge).
KEYS = ["a", "b", "c", ""]
snapshots = st.fixed_dictionaries(
    {k: st.one_of(st.fixed_dictionaries({j: values for j in KEYS}), values) for k in KEYS}
)


def applied(snapshot: dict[str, Any], *updates: dict[str, Any]) -> dict[str, Any]:
    result = copy.deepcopy(snapshot)
    for update in updates:
        apply_changes(result, copy.deepcopy(update))
    return result


# The general property (any two change sets, in every order): tests/unit/test_core_compose.py.


@given(changes, changes)
def test_the_merge_holds_each_path_of_the_second_that_nothing_later_replaces(
    first: dict[str, Any], second: dict[str, Any]
) -> None:
    merged = compose_changes(first, second)
    paths = list(second)
    kept = [
        path
        for i, path in enumerate(paths)
        if not any(path.startswith(later + ".") for later in paths[i + 1 :])
    ]
    assert {path: merged[path] for path in kept} == {path: second[path] for path in kept}
    assert list(merged)[len(merged) - len(kept) :] == kept  # last, in their order


def test_a_path_the_second_overwrites_is_dropped() -> None:
    first = {"market_data.BTC.last_price": 1.0, "market_data.ETH.last_price": 2.0}
    second = {"market_data.BTC.last_price": 3.0, "positions.ETH": None}
    assert compose_changes(first, second) == {
        "market_data.ETH.last_price": 2.0,
        "market_data.BTC.last_price": 3.0,
        "positions.ETH": None,
    }


def test_fields_below_an_entity_the_second_replaces_are_dropped() -> None:
    first = {"positions.ETH.quantity": 1.0, "orders": [{"id": "o1"}]}
    second = {"positions.ETH": None, "orders": [{"id": "o2"}]}
    assert compose_changes(first, second) == second


def test_fields_below_a_new_entity_of_the_first_stay_after_it() -> None:
    first = {"market_data.SOL": {"symbol": "SOL", "last_price": 1.0}}
    second = {"market_data.SOL.last_price": 2.0}
    assert compose_changes(first, second) == {**first, **second}


def test_a_child_the_second_sets_before_replacing_its_parent_goes_with_it() -> None:
    # "a.b.c" needs the "a.b" the first creates; the second then replaces "a.b" whole, so the
    # child's value is overwritten too and both go
    assert compose_changes({"a.b": {}}, {"a.b.c": 1, "a.b": {"d": 2}}) == {"a.b": {"d": 2}}


# Batches of records, the cadence's diff taken after each (its update, when anything changed).
batches = st.lists(st.lists(accepted_records, min_size=1, max_size=5), min_size=2, max_size=12)


@settings(max_examples=500, deadline=None)
@given(batches, st.data())
def test_a_merged_run_of_worker_updates_applies_to_any_snapshot_in_its_interval(
    records: list[list[Accepted]], data: st.DataObject
) -> None:
    # given a worker state, its updates of one cadence, and its state at every seq between
    state = TradingState(cadences=("web",), max_orders=3)
    states: dict[int, Any] = {0: copy.deepcopy(state.snapshot())}
    updates: list[Update] = []
    for batch in records:
        for record in batch:
            if state.put(record):
                states[state.seq] = copy.deepcopy(state.snapshot())
        update = state.take_diff("web")
        if update.changes:
            updates.append(update)
    if len(updates) < 2:
        return  # nothing to merge
    # when a run of consecutive updates is merged, left to right
    start = data.draw(st.integers(0, len(updates) - 2))
    end = data.draw(st.integers(start + 2, len(updates)))
    run = updates[start:end]
    merged = functools.reduce(
        lambda acc, update: compose_changes(acc, update.changes),
        run[1:],
        dict(run[0].changes),
    )
    # then it brings the state at every seq of its interval (where a snapshot may have been
    # taken) to the state at its end
    for seq in range(run[0].base_seq, run[-1].seq):
        if seq in states:
            assert applied(states[seq], merged) == states[run[-1].seq], seq
