"""compose_changes: one set of changes for two applied in order (shared/core/changes.py).

The property: for random states and random pairs of change sets (paths of every depth, whole
objects, deletions, lists, in every order), whenever applying the two in order succeeds, the
composed set applied once gives the same state.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from shared.core.changes import ChangeConflict, apply_changes, compose_changes

NAMES = st.sampled_from(["a", "b"])
leaves = st.one_of(st.none(), st.integers(-3, 3), st.lists(st.integers(0, 2), max_size=2))
values = st.recursive(leaves, lambda inner: st.dictionaries(NAMES, inner, max_size=3), max_leaves=6)
states = st.dictionaries(NAMES, st.dictionaries(NAMES, values, max_size=3), max_size=3)
# Few paths, many of them prefixes of others: the orders that matter come up often.
paths = st.sampled_from(["a", "b", "a.a", "a.b", "b.a", "a.a.b", "a.b.a"])
changes = st.lists(
    st.tuples(paths, st.one_of(values, st.dictionaries(NAMES, values))), max_size=6
).map(dict)  # in the order drawn: a child before its parent as often as after


def _applied(state: dict[str, Any], *sets: dict[str, Any]) -> dict[str, Any] | None:
    result = copy.deepcopy(state)
    try:
        for one in copy.deepcopy(sets):  # apply_changes puts the values themselves in place
            apply_changes(result, one)
    except ChangeConflict:
        return None
    return result


@settings(max_examples=400, deadline=None)
@given(states, changes, changes)
def test_composed_changes_apply_as_the_two_in_order(
    state: dict[str, Any], first: dict[str, Any], second: dict[str, Any]
) -> None:
    # given two change sets that apply to the state one after the other
    expected = _applied(state, first, second)
    assume(expected is not None)
    # when they are composed
    composed = compose_changes(first, second)
    # then the one set gives the same state
    assert _applied(state, composed) == expected
    # and neither input was changed
    assert compose_changes(first, second) == composed


@settings(max_examples=200, deadline=None)
@given(states, st.lists(changes, min_size=1, max_size=6))
def test_a_fold_of_many_applies_as_all_in_order(
    state: dict[str, Any], sets: list[dict[str, Any]]
) -> None:
    expected = _applied(state, *sets)
    assume(expected is not None)
    composed = sets[0]
    for one in sets[1:]:
        composed = compose_changes(composed, one)
    assert _applied(state, composed) == expected


def test_a_later_value_replaces_the_earlier_and_moves_after_what_is_kept() -> None:
    composed = compose_changes({"m.A.p": 1, "m.B.p": 1}, {"m.A.p": 2})
    assert composed == {"m.B.p": 1, "m.A.p": 2}
    assert list(composed) == ["m.B.p", "m.A.p"]


def test_a_replaced_object_takes_the_paths_below_it_along() -> None:
    composed = compose_changes({"m.A.p": 1, "m.A.q": 2, "m.B.p": 3}, {"m.A": {"p": 9}})
    assert composed == {"m.B.p": 3, "m.A": {"p": 9}}


def test_a_child_set_before_its_parent_is_replaced_goes_with_it() -> None:
    first = {"m.A": {"p": 1}}
    second = {"m.A.q": 2, "m.A": {"p": 3}}
    assert compose_changes(first, second) == {"m.A": {"p": 3}}
    assert _applied({"m": {}}, first, second) == {"m": {"A": {"p": 3}}}


@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [
        ({}, {"x": 1}, {"x": 1}),
        ({"x": 1}, {}, {"x": 1}),
        ({"m.A": None}, {"m.A": {"p": 1}}, {"m.A": {"p": 1}}),
        ({"m.A.p": 1}, {"m.A": None}, {"m.A": None}),
        ({"orders": [1]}, {"orders": [2, 1]}, {"orders": [2, 1]}),
    ],
)
def test_examples(first: dict[str, Any], second: dict[str, Any], expected: dict[str, Any]) -> None:
    assert compose_changes(first, second) == expected
