"""Events the worker sends over the channel layer, defined once (STYLE: `noun.verb`)."""

from __future__ import annotations

from typing import Literal, TypedDict


class StateUpdate(TypedDict):
    """One cadence's update, encoded once by the worker; handled by `state_update`.

    `json` and `msgpack` are the exact client frame `{"type":"update","seq","timestamp",
    "changes"}` in each format. `base_seq` (not in the frame) is the seq of that cadence's
    previous update: applying the changes to any snapshot taken at `base_seq <= S < seq` gives
    the state at `seq` (design principle 4).
    """

    type: Literal["state.update"]
    cadence: str
    seq: int
    base_seq: int
    sent_at: float  # the worker's wall clock at the tick, for broadcast latency
    json: str
    msgpack: bytes
