"""Property tests of the diff invariants (the model: Zulip's verify_action).

For any sequence of records interleaved with any schedule of takes on two cadences and of
snapshots:
(a) a snapshot taken at seq S, followed in order by every later update of one cadence (the first
    having base_seq <= S), equals the state at the last update's seq;
(b) an update never contains a path whose value did not change since that cadence's previous take;
(c) the cadences do not steal each other's changes ((a) holds for both at once).
"""

from __future__ import annotations

import copy
import itertools
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.core.changes import apply_changes
from shared.core.records import Accepted
from shared.core.state import TradingState, Update
from tests.unit.core_records_strategies import accepted_records

CADENCES = ("web", "tui")
MISSING = object()

operations = st.lists(
    st.one_of(
        accepted_records,
        st.sampled_from([("take", "web"), ("take", "tui"), ("snapshot", "")]),
    ),
    max_size=80,
)


def _resolve(snapshot: dict[str, Any], path: str) -> Any:
    value: Any = snapshot
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return MISSING
        value = value[part]
    return value


def _changed_in_interval(states: dict[int, Any], base: int, seq: int, path: str) -> bool:
    before = _resolve(states[base], path)
    return any(_resolve(states[s], path) != before for s in range(base + 1, seq + 1))


@settings(max_examples=500, deadline=None)
@given(operations)
def test_snapshot_plus_updates_equals_state(ops: list[Accepted | tuple[str, str]]) -> None:
    # given a state, a copy of it at every seq, and the updates and snapshots taken on the way
    state = TradingState(cadences=CADENCES, max_orders=3)
    states: dict[int, Any] = {0: copy.deepcopy(state.snapshot())}
    snapshots: list[tuple[int, Any]] = [(0, copy.deepcopy(state.snapshot()))]
    updates: dict[str, list[Update]] = {c: [] for c in CADENCES}
    last_take = dict.fromkeys(CADENCES, 0)

    def take(cadence: str) -> None:
        update = state.take_diff(cadence)
        assert update.base_seq == last_take[cadence]
        assert update.seq == state.seq
        last_take[cadence] = update.seq
        if not update.changes:
            assert update.seq == update.base_seq  # nothing changed, nothing to send
            return
        for path in update.changes:  # (b)
            assert _changed_in_interval(states, update.base_seq, update.seq, path), path
        updates[cadence].append(update)

    # when the operations run
    for op in ops:
        if isinstance(op, Accepted):
            before = state.seq
            changed = state.put(op)
            assert state.seq == before + int(changed)
            if changed:
                states[state.seq] = copy.deepcopy(state.snapshot())
            else:
                assert state.snapshot() == states[state.seq]
        elif op[0] == "take":
            take(op[1])
        else:
            snapshots.append((state.seq, copy.deepcopy(state.snapshot())))
    for cadence in CADENCES:
        take(cadence)

    # then every snapshot, replayed with each cadence's later updates, reaches the final state
    for seq, snapshot in snapshots:
        for cadence in CADENCES:  # (a) and (c)
            later = [u for u in updates[cadence] if u.seq > seq]
            replayed = copy.deepcopy(snapshot)
            if later:
                assert later[0].base_seq <= seq
            for previous, update in itertools.pairwise(later):
                assert update.base_seq == previous.seq
            for update in later:
                apply_changes(replayed, update.changes)
            assert replayed == states[state.seq]
            assert replayed == state.snapshot()


@settings(max_examples=500, deadline=None)
@given(st.lists(accepted_records, max_size=30), st.lists(accepted_records, max_size=30))
def test_applying_changes_never_mutates_shared_records(
    first: list[Accepted], then: list[Accepted]
) -> None:
    # given a snapshot that shares its records with the state, and an independent twin state
    state = TradingState(cadences=("web",), max_orders=3)
    twin = TradingState(cadences=("web",), max_orders=3)
    for record in first:
        state.put(record)
        twin.put(record)
    state.take_diff("web")
    snapshot = state.snapshot()
    # when later updates are applied to that snapshot in place
    for record in then:
        state.put(record)
        twin.put(record)
        apply_changes(snapshot, state.take_diff("web").changes)
    # then the snapshot follows the state, and the state's own records were never touched
    assert snapshot == state.snapshot()
    assert state.snapshot() == twin.snapshot()
