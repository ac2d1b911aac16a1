"""dashboard_client's protocol logic against crafted frames: apply, gaps, resume, status."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from dashboard_client import Action, Follower, Outcome, apply_changes
from dashboard_client.changes import ChangeConflict as ClientConflict
from shared.core.changes import ChangeConflict
from shared.core.changes import apply_changes as core_apply


def snapshot(seq: int, data: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    return {"type": "snapshot", "seq": seq, "timestamp": "t", "data": data or {}, **extra}


def update(base: int | None, seq: int, changes: dict[str, Any], **extra: Any) -> dict[str, Any]:
    frame: dict[str, Any] = {"type": "update", "seq": seq, "timestamp": "t", "changes": changes}
    if base is not None:
        frame["base_seq"] = base
    return {**frame, **extra}


MD = {"market_data": {"A": {"symbol": "A", "last_price": 1.0}}}


def following(seq: int = 10, epoch: str | None = "e1") -> Follower:
    follower = Follower()
    follower.connecting(resume=False)
    extra = {} if epoch is None else {"epoch": epoch}
    assert follower.receive(snapshot(seq, copy.deepcopy(MD), **extra)) is Action.CHANGED
    assert follower.outcome is Outcome.LIVE
    return follower


def test_an_update_applies_when_its_base_is_at_or_below_the_state() -> None:
    follower = following(seq=10)
    # base_seq <= S < seq: applies (the base may be older: the other cadence's ticks)
    assert follower.receive(update(8, 12, {"market_data.A.last_price": 2.0})) is Action.CHANGED
    assert follower.seq == 12
    assert follower.data == {"market_data": {"A": {"symbol": "A", "last_price": 2.0}}}
    assert follower.receive(update(12, 13, {"market_data.B": {"symbol": "B"}})) is Action.CHANGED
    assert set(follower.data["market_data"]) == {"A", "B"}
    assert follower.updates == 2


def test_an_update_already_held_is_skipped() -> None:
    follower = following(seq=10)
    assert follower.receive(update(5, 10, {"market_data.A.last_price": 9.0})) is Action.NONE
    assert follower.receive(update(5, 7, {"market_data.A.last_price": 9.0})) is Action.NONE
    assert follower.data == MD
    assert follower.gaps == 0


def test_an_update_past_the_state_is_a_gap_and_updates_wait_for_the_snapshot() -> None:
    follower = following(seq=10)
    # given an update whose base the client never had
    assert follower.receive(update(11, 12, {"market_data.A.last_price": 2.0})) is Action.REFRESH
    assert follower.gaps == 1
    assert follower.data == MD  # nothing applied
    # then later updates are ignored until the refresh's snapshot
    assert follower.receive(update(12, 13, {"market_data.A.last_price": 3.0})) is Action.NONE
    assert follower.seq == 10
    assert follower.receive(snapshot(13, {"market_data": {}}, epoch="e1")) is Action.CHANGED
    assert (follower.seq, follower.outcome, follower.reason) == (13, Outcome.RESYNCED, "gap")
    assert follower.receive(update(13, 14, {"market_data.C": {"symbol": "C"}})) is Action.CHANGED


def test_an_update_of_another_epoch_is_a_gap() -> None:
    follower = following(seq=10, epoch="e1")
    frame = update(9, 11, {"market_data.A.last_price": 2.0}, epoch="e2")
    assert follower.receive(frame) is Action.REFRESH


def test_without_base_seq_a_change_that_does_not_apply_is_the_gap() -> None:
    # given a server older than contract 4.1 (no base_seq, no epoch)
    follower = following(seq=10, epoch=None)
    assert follower.receive(update(None, 11, {"market_data.A.last_price": 2.0})) is Action.CHANGED
    assert follower.receive(update(None, 12, {"positions.X.quantity": 1.0})) is Action.REFRESH
    assert follower.resume_query() == {}  # no epoch: it cannot ask to resume


def test_a_resume_that_the_server_recovers_keeps_the_state_and_applies_the_replay() -> None:
    follower = following(seq=10)
    # when the connection is lost and the client reconnects asking to resume
    assert follower.resume_query() == {"since": "10", "epoch": "e1"}
    follower.connecting(resume=True)
    # updates before the server's answer apply to nothing yet
    assert follower.receive(update(10, 11, {"market_data.A.last_price": 5.0})) is Action.NONE
    assert follower.receive({"type": "recovered", "since": 10, "seq": 12, "epoch": "e1"}) is (
        Action.CHANGED
    )
    assert follower.outcome is Outcome.RECOVERED
    assert follower.receive(update(10, 11, {"market_data.A.last_price": 2.0})) is Action.CHANGED
    assert follower.receive(update(11, 12, {"market_data.A.bid_price": 1.5})) is Action.CHANGED
    assert follower.data == {
        "market_data": {"A": {"symbol": "A", "last_price": 2.0, "bid_price": 1.5}}
    }
    assert (follower.seq, follower.recoveries, follower.resyncs) == (12, 1, 0)


def test_a_recovered_marker_for_another_seq_or_epoch_is_not_trusted() -> None:
    for marker in (
        {"type": "recovered", "since": 9, "seq": 12, "epoch": "e1"},
        {"type": "recovered", "since": 10, "seq": 12, "epoch": "e2"},
    ):
        follower = following(seq=10)
        follower.connecting(resume=True)
        assert follower.receive(marker) is Action.REFRESH
        assert follower.outcome is Outcome.LIVE
    # nor one it did not ask for
    follower = following(seq=10)
    follower.connecting(resume=False)
    assert follower.receive({"type": "recovered", "since": 10, "seq": 10, "epoch": "e1"}) is (
        Action.REFRESH
    )


def test_a_resume_refused_is_a_resync_with_the_servers_reason() -> None:
    for reason in ("epoch_changed", "too_old", "unknown"):
        follower = following(seq=10)
        follower.connecting(resume=True)
        frame = snapshot(40, {"account": {"total_balance": 1.0}}, epoch="e2", recovered=False)
        assert follower.receive({**frame, "reason": reason}) is Action.CHANGED
        assert (follower.outcome, follower.reason) == (Outcome.RESYNCED, reason)
        assert (follower.seq, follower.epoch) == (40, "e2")
        assert follower.data == {"account": {"total_balance": 1.0}}
        assert follower.resume_query() == {"since": "40", "epoch": "e2"}
    # and a plain snapshot where a resume was asked (a server without resume) is one too
    follower = following(seq=10)
    follower.connecting(resume=True)
    follower.receive(snapshot(11, epoch="e1"))
    assert (follower.outcome, follower.reason) == (Outcome.RESYNCED, "unknown")


def test_status_notice_and_shutdown_frames() -> None:
    follower = following()
    status = {
        "type": "status",
        "seq": 10,
        "epoch": "e1",
        "worker": {"up": True, "heartbeat_age_s": 0.2},
        "backends": {"order_service": True, "strategy_service": False},
        "ingest_lag_s": 0.01,
    }
    assert follower.receive(status) is Action.CHANGED
    assert follower.feed is not None
    assert follower.feed.problems == ["strategy_service down"]
    down = {**status, "worker": {"up": False, "heartbeat_age_s": None}}
    follower.receive(down)
    assert follower.feed.problems == ["worker down: no updates are coming"]
    assert follower.seq == 10  # a status moves no state
    assert follower.receive({"type": "notice", "level": "warning", "text": "x"}) is Action.CHANGED
    assert follower.notice is not None
    assert follower.notice.text == "x"
    assert follower.receive({"type": "shutdown", "reconnect_after_ms": 250}) is Action.RECONNECT
    assert follower.reconnect_after_ms == 250
    follower.connecting(resume=True)
    assert follower.reconnect_after_ms is None
    assert follower.receive({"type": "pong"}) is Action.NONE


keys = st.sampled_from(["A", "B", "x", "__proto__"])
values = st.one_of(st.none(), st.integers(-3, 3), st.dictionaries(keys, st.integers(0, 3)))
paths = st.lists(keys, min_size=1, max_size=3).map(".".join)
states = st.dictionaries(
    keys, st.one_of(st.dictionaries(keys, st.dictionaries(keys, st.integers())), st.integers())
)


@given(states, st.dictionaries(paths, values, max_size=6))
def test_the_clients_apply_agrees_with_the_servers(
    state: dict[str, Any], changes: dict[str, Any]
) -> None:
    try:
        expected: Any = core_apply(copy.deepcopy(state), changes)
    except ChangeConflict:
        expected = "conflict"
    try:
        got: Any = apply_changes(copy.deepcopy(state), changes)
    except ClientConflict:
        got = "conflict"
    assert got == expected
