"""Adaptive conflation of a cadence's updates in the web process's fan-out.

The hub (realtime/hub.py) does not write a worker frame to its members the moment it arrives: it
keeps it as the cadence's pending update and fans it out on the loop's next turn. When the
process is behind (its loop was busy writing the previous broadcast to thousands of sockets,
and the next worker frames were waiting in the Redis connection), the frames that arrive
before that turn are merged into the pending one (`shared.core.changes.compose_changes`: the first
frame's `base_seq`, the last one's `seq`, their changes composed) and go out as one frame,
encoded once per format for all the full subscribers. So a web process that cannot write 4
frames a second to each of its clients writes fewer, larger ones, as a bare asyncio server
whose timer fires late does, instead of queueing frames and falling further behind. When it is
not behind, each worker frame goes out as it is (no decode, no encode).

Contract 4.1 holds exactly: the merged frame applies to any state at `base_seq <= S < seq`
(the worker's updates are dirty-path sets whose values are read at their `seq`, and the merge
keeps every path of the later one), so a client checking `base_seq` against its seq never sees
a gap. The mirror and the resume rings take every worker frame as it is; only the broadcast is
merged.
"""

from __future__ import annotations

from typing import Any

from realtime.protocol import Format, encode, update_frame
from shared.core.changes import compose_changes
from shared.events import StateUpdate


class PendingUpdate:
    """One cadence's update not yet handed to its members: a worker frame, or several merged."""

    __slots__ = ("_event", "changes", "first", "frames", "timestamp")

    def __init__(self, event: StateUpdate, changes: dict[str, Any], timestamp: Any) -> None:
        self.first = event  # its base_seq and sent_at are the merge's
        self._event = event  # the last absorbed; the merge's seq, epoch and frame fields
        self.changes = changes
        self.timestamp = timestamp
        self.frames = 1  # how many worker frames it holds

    @property
    def seq(self) -> int:
        """The seq the pending update brings a client to."""
        return self._event["seq"]

    def absorb(self, event: StateUpdate, changes: dict[str, Any], timestamp: Any) -> bool:
        """Merge the cadence's next worker frame into this one; False if it does not continue
        it exactly (another lineage, a hole): then this one must go out first, as it is."""
        if event.get("epoch", "") != self._event.get("epoch", ""):
            return False
        if not event["base_seq"] <= self.seq < event["seq"]:
            return False
        merged = compose_changes(self.changes, changes)
        self._event, self.changes, self.timestamp = event, merged, timestamp
        self.frames += 1
        return True

    def event(self) -> StateUpdate:
        """The update to fan out: the worker's own when nothing was merged, else the merge,
        encoded once per format (`protocol.update_frame`, as the worker's)."""
        if self.frames == 1:
            return self._event
        last, first = self._event, self.first
        epoch = last.get("epoch", "")
        frame = update_frame(last["seq"], first["base_seq"], epoch, self.timestamp, self.changes)
        as_json, as_msgpack = encode(frame, Format.JSON), encode(frame, Format.MSGPACK)
        assert isinstance(as_json, str)
        assert isinstance(as_msgpack, bytes)
        return {
            "type": "state.update",
            "cadence": last["cadence"],
            "seq": last["seq"],
            "base_seq": first["base_seq"],
            "epoch": epoch,
            "sent_at": first["sent_at"],  # the oldest change's: the broadcast latency metric
            "json": as_json,
            "msgpack": as_msgpack,
        }
