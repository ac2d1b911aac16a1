"""PendingUpdate: a cadence's worker frames merged while the web process is behind."""

from __future__ import annotations

import json
from typing import Any

import msgpack

from aggregation.broadcast import update_event
from realtime.conflation import PendingUpdate
from shared.core.state import Update
from shared.events import StateUpdate


def event(base_seq: int, seq: int, changes: dict[str, Any], epoch: str = "e1") -> StateUpdate:
    return update_event("web", Update(base_seq, seq, changes), epoch=epoch)


def pending(first: StateUpdate) -> PendingUpdate:
    frame = msgpack.unpackb(first["msgpack"])
    return PendingUpdate(first, frame["changes"], frame["timestamp"])


def absorb(into: PendingUpdate, update: StateUpdate) -> bool:
    frame = msgpack.unpackb(update["msgpack"])
    return into.absorb(update, frame["changes"], frame["timestamp"])


def test_one_frame_goes_out_as_the_worker_sent_it() -> None:
    first = event(1, 2, {"market_data.A.last_price": 1.0})
    assert pending(first).event() is first


def test_merged_frames_go_out_as_one_from_the_first_base_to_the_last_seq() -> None:
    # given three consecutive worker frames of a cadence
    first = event(1, 3, {"market_data.A.last_price": 1.0, "market_data.B.last_price": 5.0})
    second = event(3, 4, {"market_data.A.last_price": 2.0})
    third = event(4, 7, {"positions.B": {"symbol": "B", "quantity": 1.0}})
    # when they are merged
    merged = pending(first)
    assert absorb(merged, second)
    assert absorb(merged, third)
    out = merged.event()
    # then one update from the first's base_seq to the last's seq, the same in both formats
    frame = json.loads(out["json"])
    assert frame == msgpack.unpackb(out["msgpack"])
    assert (out["base_seq"], out["seq"], out["epoch"]) == (1, 7, "e1")
    assert [frame[k] for k in ("type", "base_seq", "seq", "epoch")] == ["update", 1, 7, "e1"]
    assert frame["changes"] == {
        "market_data.B.last_price": 5.0,
        "market_data.A.last_price": 2.0,
        "positions.B": {"symbol": "B", "quantity": 1.0},
    }
    assert frame["timestamp"] == json.loads(third["json"])["timestamp"]
    assert out["sent_at"] == first["sent_at"]  # the broadcast latency of the oldest change
    assert merged.frames == 3


def test_a_frame_that_does_not_continue_the_pending_one_is_not_merged() -> None:
    merged = pending(event(1, 3, {"market_data.A.last_price": 1.0}))
    assert not absorb(merged, event(4, 5, {"market_data.A.last_price": 2.0}))  # a hole
    assert not absorb(merged, event(3, 5, {"market_data.A.last_price": 2.0}, epoch="e2"))
    assert not absorb(merged, event(2, 3, {"market_data.A.last_price": 2.0}))  # not newer
    assert merged.frames == 1
    assert merged.seq == 3
