"""The connection state machine (realtime/connection_state.py): every legal and illegal move."""

from __future__ import annotations

import itertools

import pytest

from realtime.connection_state import ConnectionState, IllegalTransition

S = ConnectionState

LEGAL = {
    (S.CONNECTING, S.OPEN),
    (S.CONNECTING, S.REFUSED),
    (S.CONNECTING, S.CLOSED),
    (S.REFUSED, S.CLOSED),
    (S.OPEN, S.AWAITING_MIRROR),
    (S.OPEN, S.CLOSING),
    (S.OPEN, S.CLOSED),
    (S.AWAITING_MIRROR, S.OPEN),
    (S.AWAITING_MIRROR, S.CLOSING),
    (S.AWAITING_MIRROR, S.CLOSED),
    (S.CLOSING, S.CLOSED),
}


@pytest.mark.parametrize(
    ("current", "target"), sorted(LEGAL, key=lambda m: (m[0].value, m[1].value))
)
def test_a_legal_move_returns_its_target(current: ConnectionState, target: ConnectionState) -> None:
    assert current.to(target) is target


ILLEGAL = sorted(set(itertools.product(S, S)) - LEGAL, key=lambda m: (m[0].value, m[1].value))


@pytest.mark.parametrize(("current", "target"), ILLEGAL)
def test_every_other_move_raises(current: ConnectionState, target: ConnectionState) -> None:
    with pytest.raises(IllegalTransition) as raised:
        current.to(target)
    assert (raised.value.current, raised.value.target) == (current, target)
    assert current.value in str(raised.value)
    assert target.value in str(raised.value)


def test_the_illegal_moves_include_the_ones_that_would_hide_a_bug() -> None:
    # reopening a closed connection, closing one twice, a refused one reaching the hub
    for move in [
        (S.CLOSED, S.OPEN),
        (S.CLOSED, S.CLOSED),
        (S.CLOSING, S.CLOSING),
        (S.REFUSED, S.OPEN),
        (S.CLOSING, S.OPEN),
        (S.OPEN, S.OPEN),
    ]:
        assert move in ILLEGAL


def test_only_open_states_are_live() -> None:
    assert {state for state in S if state.live} == {S.OPEN, S.AWAITING_MIRROR}


def test_closed_is_the_only_end() -> None:
    ends = {state for state in S if not any((state, t) in LEGAL for t in S)}
    assert ends == {S.CLOSED}
    # and every state reaches it
    assert all((state, S.CLOSED) in LEGAL for state in S if state is not S.CLOSED)
