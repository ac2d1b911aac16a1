"""The resume ring: one cadence's recent updates, to bring a reconnecting client up to date.

Contract 4.1: a client reconnecting with `?since=SEQ&epoch=E` gets the updates it missed, when
this process still holds them, instead of a snapshot. Each web process's hub keeps one ring per
cadence, fed by the same `state.update` events it hands to its clients (so every web process can
resume any client): the worker's pre-encoded frames, replayed as they are to full subscribers.

The ring holds a chain: each entry's `base_seq` is at or below the previous entry's `seq`. Hence
for every `S` in `[floor, head]` the entries with `seq > S` applied in order to the state at `S`
give the state at `head` exactly (design principle 4: an update applies to any state at
`base_seq <= S < seq`). A replay of several entries is sent as one (`merged`: the changes
composed, contract 4.1 "or fewer, merged"), so its size is bounded by what changed, not by how
long the client was away. An update that does not continue the chain (the hub missed one; a new
epoch) starts the ring over at that update. The ring forgets entries older than `span_s`, and
past `max_entries` or `max_bytes`, oldest first, so its memory is bounded whatever the rate.

Free of Django and I/O: the property tests in tests/unit/test_resume.py drive it directly.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple

import msgpack

from realtime.protocol import Format, encode, size_of, update_frame
from shared.core.changes import compose_changes


class Reason(StrEnum):
    """Why a resume was refused (the snapshot's `reason`, contract 4.1)."""

    EPOCH_CHANGED = "epoch_changed"  # the client's seqs are of another lineage
    TOO_OLD = "too_old"  # the ring no longer (or never) held updates that far back
    UNKNOWN = "unknown"  # a seq ahead of this process, or a hole in what it received


@dataclass(frozen=True, slots=True)
class Entry:
    """One update as the hub received it: its seqs, its frames, and when it arrived."""

    base_seq: int
    seq: int
    json: str
    msgpack: bytes
    at: float  # the hub's monotonic clock at arrival

    @property
    def size(self) -> int:
        """The bytes this entry holds (its two frames; the object overhead is not counted)."""
        return size_of(self.json) + len(self.msgpack)


class Recovered(NamedTuple):
    """A resume granted: replaying `entries` in order brings a client at `since` to `seq`."""

    since: int
    seq: int
    epoch: str
    entries: tuple[Entry, ...]


class Refused(NamedTuple):
    """A resume refused: the client gets a snapshot saying why."""

    reason: Reason


class ResumeRing:
    """A bounded chain of one cadence's recent updates in one lineage."""

    def __init__(self, *, span_s: float, max_entries: int, max_bytes: int) -> None:
        self.span_s = span_s
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.entries: deque[Entry] = deque()
        self.bytes = 0
        self.epoch = ""
        self.head: int | None = None  # the seq the chain ends at; None before anything is known
        self._floor = 0  # the chain's start when it holds no entry
        self._below_floor = Reason.TOO_OLD  # what a seq below the floor is told

    @property
    def floor(self) -> int:
        """The lowest seq a client can resume from: `[floor, head]` is covered."""
        return self.entries[0].base_seq if self.entries else self._floor

    def reset(self, epoch: str, seq: int) -> None:
        """Start over, knowing only that the state is at `seq` of `epoch` (the mirror loaded)."""
        self._restart(epoch, seq, Reason.TOO_OLD)

    def add(self, entry: Entry, epoch: str) -> None:
        """Append one received update (older or repeated ones are ignored).

        One that ends exactly at the head of an empty ring (the mirror loaded at its seq just
        before it arrived) is kept: it reaches the head from its base, further back.
        """
        if self.head is None or epoch != self.epoch:
            self._restart(epoch, entry.base_seq, Reason.UNKNOWN)
        elif entry.seq < self.head or (entry.seq == self.head and self.entries):
            return  # already in the chain, or older than its end: nothing new
        elif entry.base_seq > self.head:
            # A hole: an update in between never arrived. Older entries no longer chain to the
            # new ones: start over at this one.
            self._restart(epoch, entry.base_seq, Reason.UNKNOWN)
        self.entries.append(entry)
        self.bytes += entry.size
        self.head = entry.seq
        self.trim(entry.at)

    def trim(self, now: float) -> None:
        """Forget entries older than the span, or past the entry or byte bounds."""
        entries = self.entries
        oldest = now - self.span_s
        while entries and (
            entries[0].at < oldest or len(entries) > self.max_entries or self.bytes > self.max_bytes
        ):
            dropped = entries.popleft()
            self.bytes -= dropped.size
            self._floor = dropped.seq
            self._below_floor = Reason.TOO_OLD

    def resume(
        self, since: int, epoch: str, *, now: float, current_seq: int | None = None
    ) -> Recovered | Refused:
        """Answer a client at `since` of `epoch`.

        `current_seq` is the process's latest seq in the ring's epoch when it is ahead of the
        ring's head (the other cadence moved the mirror on): a client between the two holds an
        exact state that this cadence's next update applies to, so it resumes with nothing to
        replay. The answer holds only what the ring can vouch for: a `Recovered` replay is exact.
        """
        if self.head is None:
            return Refused(Reason.UNKNOWN)
        if epoch != self.epoch:
            return Refused(Reason.EPOCH_CHANGED)
        self.trim(now)
        head = self.head
        if since > max(head, current_seq or 0):
            return Refused(Reason.UNKNOWN)
        if since >= head:
            return Recovered(since, since, epoch, ())
        if since < self.floor:
            return Refused(self._below_floor)
        missed: list[Entry] = []
        for entry in reversed(self.entries):  # the newest are the ones wanted
            if entry.seq <= since:
                break
            missed.append(entry)
        missed.reverse()
        return Recovered(since, head, epoch, tuple(missed))

    def _restart(self, epoch: str, floor: int, below_floor: Reason) -> None:
        self.entries.clear()
        self.bytes = 0
        self.epoch = epoch
        self.head = floor
        self._floor = floor
        self._below_floor = below_floor


def merged(entries: Sequence[Entry], epoch: str) -> Entry:
    """One entry that does what `entries` (a chain, oldest first) do applied in order.

    Its `base_seq` is the first's and its `seq` the last's, so it applies to every state the
    first applies to and leaves the state the last leaves (each entry's changes composed in
    order, `compose_changes`); its timestamp is the last's. Encoded here once in each format.
    """
    if len(entries) == 1:
        return entries[0]
    frames: list[dict[str, Any]] = [msgpack.unpackb(entry.msgpack) for entry in entries]
    changes = frames[0]["changes"]
    for frame in frames[1:]:
        changes = compose_changes(changes, frame["changes"])
    first, last = entries[0], entries[-1]
    frame = update_frame(last.seq, first.base_seq, epoch, frames[-1]["timestamp"], changes)
    as_json = encode(frame, Format.JSON)
    as_msgpack = encode(frame, Format.MSGPACK)
    assert isinstance(as_json, str)
    assert isinstance(as_msgpack, bytes)
    return Entry(first.base_seq, last.seq, as_json, as_msgpack, last.at)
