"""Property tests of the resume ring (realtime/resume.py, contract 4.1).

For random histories — records, takes on two cadences, updates the hub never received, a new
lineage, time passing, a hub that starts late — and every `since`:
(a) a `Recovered` answer is exact: its updates applied in order to the state at `since` give the
    state at the answer's `seq`, which is at least the ring's head (the client is current);
(b) with nothing forgotten (span and bounds large), `Recovered` is given exactly when an exact
    chain of received updates from `since` exists (or `since` is at or past the head);
(c) whatever the bounds, the ring never holds more than them;
(d) a narrowed client's replay — each entry filtered to its subscription, the empty ones
    skipped, each frame's base_seq the seq of its previous frame — is exact for it too;
(e) the replay merged into one update (`merged`, what the hub sends) is exact as (a) and (d).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import msgpack
import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregation.broadcast import update_event
from realtime.protocol import CHANNEL_NAMES, filter_changes, filter_snapshot
from realtime.resume import Entry, Reason, Recovered, Refused, ResumeRing, merged
from shared.core.changes import apply_changes
from shared.core.records import Accepted
from shared.core.state import TradingState
from tests.unit.core_records_strategies import SYMBOLS, accepted_records

CADENCES = ("web", "tui")

operations = st.lists(
    st.one_of(
        accepted_records,
        accepted_records,
        st.sampled_from(
            [
                ("take", "web"),
                ("take", "web"),
                ("take", "tui"),
                ("lose", "web"),  # the next web update never reaches the hub
                ("epoch", ""),  # Redis lost the snapshot: a new lineage one seq further
                ("start", ""),  # the hub starts (loads the mirror) here
                ("wait", ""),  # a second passes
            ]
        ),
    ),
    max_size=80,
)


@dataclass
class Model:
    """A worker's state and a hub that receives (some of) its updates."""

    ring: ResumeRing
    state: TradingState = field(
        default_factory=lambda: TradingState(cadences=CADENCES, max_orders=3)
    )
    epoch: str = "e0"
    states: dict[tuple[str, int], Any] = field(default_factory=dict)
    received: list[tuple[str, int, int]] = field(default_factory=list)  # web: epoch, base, seq
    started: bool = False
    start_seq: int = 0
    web_epoch: str = ""  # what the hub knows of the web cadence: its lineage and last seq
    web_head: int = 0
    mirror: tuple[str, int] = ("", 0)  # the hub's mirror: lineage and seq
    now: float = 0.0
    lose_next: bool = False

    def record(self) -> None:
        self.states[(self.epoch, self.state.seq)] = copy.deepcopy(self.state.snapshot())

    def run(self, op: Accepted | tuple[str, str]) -> None:
        if isinstance(op, Accepted):
            if self.state.put(op):
                self.record()
            return
        kind, cadence = op
        if kind == "take":
            self.take(cadence)
        elif kind == "lose":
            self.lose_next = True
        elif kind == "epoch":
            self.state.load(self.state.snapshot(), seq=self.state.seq + 1)
            self.epoch = f"e{len(self.epoch)}"  # a different name each time
            self.record()
        elif kind == "start" and not self.started:
            self.started, self.start_seq = True, self.state.seq
            self.web_epoch, self.web_head = self.epoch, self.state.seq
            self.mirror = (self.epoch, self.state.seq)
            self.ring.reset(self.epoch, self.state.seq)
        elif kind == "wait":
            self.now += 1.0

    def take(self, cadence: str) -> None:
        update = self.state.take_diff(cadence)
        if not update.changes or not self.started:
            return
        if cadence == "web" and self.lose_next:
            self.lose_next = False
            return
        if self.mirror[0] != self.epoch:  # another lineage: the mirror reloads (at least this)
            self.mirror = (self.epoch, self.state.seq)
        self.mirror = (self.epoch, max(self.mirror[1], update.seq))
        if cadence == "web":
            event = update_event(cadence, update, epoch=self.epoch)
            self.received.append((self.epoch, update.base_seq, update.seq))
            self.web_epoch, self.web_head = self.epoch, update.seq
            entry = Entry(update.base_seq, update.seq, event["json"], event["msgpack"], self.now)
            self.ring.add(entry, self.epoch)

    @property
    def current_seq(self) -> int | None:
        """What the hub passes: the mirror's seq when it is of the ring's lineage."""
        return self.mirror[1] if self.mirror[0] == self.web_epoch else None

    def resume(self, since: int, epoch: str) -> Recovered | Refused:
        return self.ring.resume(since, epoch, now=self.now, current_seq=self.current_seq)


def _history(ops: list[Accepted | tuple[str, str]], ring: ResumeRing) -> Model:
    model = Model(ring)
    model.record()
    for op in ops:
        model.run(op)
    return model


def _exact_chain_exists(model: Model, since: int) -> bool:
    """Whether the web updates the hub received form an exact chain from `since` to the end."""
    later = [(base, seq) for epoch, base, seq in model.received if epoch == model.epoch]
    later = [(base, seq) for base, seq in later if seq > since]
    if not later:
        return False
    previous = since
    for base, seq in later:
        if base > previous:
            return False
        previous = seq
    return True


def _check_exact(model: Model, since: int, answer: Recovered) -> None:
    assert answer.epoch == model.epoch
    assert answer.since == since
    assert model.ring.head is not None
    assert answer.seq >= model.ring.head
    for as_json in (True, False):
        replayed = copy.deepcopy(model.states[(model.epoch, since)])
        previous = since
        for entry in answer.entries:
            frame = orjson.loads(entry.json) if as_json else msgpack.unpackb(entry.msgpack)
            assert frame["base_seq"] <= previous < frame["seq"]  # the client's own check
            assert frame["epoch"] == model.epoch
            apply_changes(replayed, frame["changes"])
            previous = frame["seq"]
        assert previous == answer.seq or not answer.entries
        assert replayed == model.states[(model.epoch, answer.seq)]


def _merged(answer: Recovered) -> Recovered:
    """The answer as the hub gives it: its replay as one update."""
    if not answer.entries:
        return answer
    return answer._replace(entries=(merged(answer.entries, answer.epoch),))


def _candidates(model: Model) -> range:
    return range(max(0, model.start_seq - 3), model.state.seq + 3)


@settings(max_examples=400, deadline=None)
@given(operations)
def test_a_resume_is_granted_exactly_when_it_is_exact(
    ops: list[Accepted | tuple[str, str]],
) -> None:
    # given a history with a ring that forgets nothing
    model = _history(ops, ResumeRing(span_s=1e9, max_entries=10**9, max_bytes=10**12))
    # when every since is asked, in the current lineage and in another
    for since in _candidates(model):
        answer = model.resume(since, model.epoch)
        # then a granted resume is exact, and it is granted whenever one can be
        current = max(model.web_head, model.current_seq or 0)
        possible = (
            model.started
            and model.web_epoch == model.epoch
            and (model.web_head <= since <= current or _exact_chain_exists(model, since))
        )
        if isinstance(answer, Recovered):
            assert (model.epoch, since) in model.states  # a seq of this lineage
            _check_exact(model, since, answer)
            _check_exact(model, since, _merged(answer))
        assert isinstance(answer, Recovered) == possible, (since, answer, model.received)
        if not model.started:
            assert answer == Refused(Reason.UNKNOWN)
        elif model.web_epoch != model.epoch:
            assert answer == Refused(Reason.EPOCH_CHANGED)
        elif since > current:
            assert answer == Refused(Reason.UNKNOWN)
        if model.started:
            assert model.resume(since, "another") == Refused(Reason.EPOCH_CHANGED)


@settings(max_examples=400, deadline=None)
@given(
    operations,
    st.floats(min_value=0.5, max_value=5.0),
    st.integers(min_value=1, max_value=6),
    st.sampled_from([300, 1000, 5000, 10**6]),
)
def test_a_bounded_ring_stays_within_bounds_and_exact(
    ops: list[Accepted | tuple[str, str]], span_s: float, max_entries: int, max_bytes: int
) -> None:
    # given a history with a ring that forgets by age, count and bytes
    ring = ResumeRing(span_s=span_s, max_entries=max_entries, max_bytes=max_bytes)
    model = _history(ops, ring)
    # then it holds no more than its bounds
    assert len(ring.entries) <= max_entries
    assert ring.bytes <= max_bytes
    assert ring.bytes == sum(entry.size for entry in ring.entries)
    # and what it grants is exact; what it forgot is too old
    for since in _candidates(model):
        answer = model.resume(since, model.epoch)
        if isinstance(answer, Recovered):
            _check_exact(model, since, answer)
            _check_exact(model, since, _merged(answer))
        elif model.started and _exact_chain_exists(model, since):
            assert answer == Refused(Reason.TOO_OLD)  # the chain existed; the ring forgot it
    assert all(model.now - entry.at <= span_s for entry in ring.entries)


def _entry(base: int, seq: int, at: float = 0.0) -> Entry:
    frame = {"type": "update", "seq": seq, "base_seq": base, "changes": {"account": {}}}
    return Entry(base, seq, orjson.dumps(frame).decode(), msgpack.packb(frame), at)


def test_reasons() -> None:
    # given a ring started at seq 10 that received 10->12, 12->15, then (a hole) 17->20
    ring = ResumeRing(span_s=60, max_entries=100, max_bytes=10**6)
    assert ring.resume(10, "e", now=0) == Refused(Reason.UNKNOWN)  # nothing known yet
    ring.reset("e", 10)
    ring.add(_entry(10, 12), "e")
    ring.add(_entry(12, 15), "e")
    assert ring.resume(9, "e", now=0) == Refused(Reason.TOO_OLD)
    assert [e.seq for e in ring.resume(11, "e", now=0).entries] == [12, 15]  # type: ignore[union-attr]
    ring.add(_entry(17, 20), "e")
    # then below the hole is unknown, from its base on is recovered, the head is recovered with
    # nothing to replay, past it unknown, and another epoch changed
    assert ring.resume(15, "e", now=0) == Refused(Reason.UNKNOWN)
    assert ring.resume(17, "e", now=0) == Recovered(17, 20, "e", (ring.entries[0],))
    assert ring.resume(20, "e", now=0) == Recovered(20, 20, "e", ())
    assert ring.resume(21, "e", now=0) == Refused(Reason.UNKNOWN)
    assert ring.resume(22, "e", now=0, current_seq=22) == Recovered(22, 22, "e", ())
    assert ring.resume(20, "f", now=0) == Refused(Reason.EPOCH_CHANGED)
    # and past the span what it held is too old, while the head is still current
    assert ring.resume(17, "e", now=61) == Refused(Reason.TOO_OLD)
    assert ring.resume(20, "e", now=61) == Recovered(20, 20, "e", ())
    # and a repeated or older update changes nothing
    ring.add(_entry(12, 15, at=61), "e")
    assert ring.head == 20
    assert not ring.entries
    # and an update repeated at the head is not held twice
    ring.add(_entry(17, 20, at=61), "e")
    ring.add(_entry(17, 20, at=61), "e")
    assert len(ring.entries) == 1
    # and a hole of a single seq (20->21 never arrived) is a hole
    ring.add(_entry(21, 22, at=61), "e")
    assert ring.resume(20, "e", now=61) == Refused(Reason.UNKNOWN)
    assert ring.resume(21, "e", now=61) == Recovered(21, 22, "e", (ring.entries[0],))
    assert ring.resume(17, "e", now=61) == Refused(Reason.UNKNOWN)


def test_bounds_forget_the_oldest_first() -> None:
    # given rings bounded by count and by bytes
    one = _entry(0, 1).size
    by_count = ResumeRing(span_s=60, max_entries=2, max_bytes=10**6)
    by_bytes = ResumeRing(span_s=60, max_entries=100, max_bytes=2 * one + 1)
    for ring in (by_count, by_bytes):
        ring.reset("e", 0)
        # when three updates arrive
        for seq in (1, 2, 3):
            ring.add(_entry(seq - 1, seq), "e")
        # then the oldest is forgotten: from 1 on is recovered, from 0 too old
        assert [entry.seq for entry in ring.entries] == [2, 3]
        assert ring.bytes == 2 * one
        assert ring.resume(0, "e", now=0) == Refused(Reason.TOO_OLD)
        assert ring.resume(1, "e", now=0) == Recovered(1, 3, "e", tuple(ring.entries))


subscriptions = st.dictionaries(
    st.sampled_from(CHANNEL_NAMES),
    st.one_of(st.none(), st.frozensets(st.sampled_from(SYMBOLS), min_size=1)),
    min_size=1,
).map(lambda d: {k: (None if k == "account" else v) for k, v in d.items()})


@settings(max_examples=300, deadline=None)
@given(operations, subscriptions)
def test_a_narrowed_replay_is_exact_from_the_clients_own_frames(
    ops: list[Accepted | tuple[str, str]], subscription: dict[str, frozenset[str] | None]
) -> None:
    # given a history and a narrowed client at every since the ring can resume
    model = _history(ops, ResumeRing(span_s=1e9, max_entries=10**9, max_bytes=10**12))
    for since in _candidates(model):
        answer = model.resume(since, model.epoch)
        if not isinstance(answer, Recovered):
            continue
        for replay in (answer, _merged(answer)):  # entry by entry, and as the hub sends it
            # when its replay is filtered as the consumer does
            view = copy.deepcopy(filter_snapshot(model.states[(model.epoch, since)], subscription))
            sent = since
            for entry in replay.entries:
                narrowed = filter_changes(msgpack.unpackb(entry.msgpack)["changes"], subscription)
                if not narrowed:
                    continue
                # then each frame, with base_seq its previous frame's seq, moves it forward
                assert sent < entry.seq
                apply_changes(view, narrowed)
                sent = entry.seq
            # and it ends exactly at the view of the state at the answer's seq
            assert view == filter_snapshot(model.states[(model.epoch, answer.seq)], subscription)


# Histories that replay several updates: the hub starts first, then blocks of records each
# ended by a take (or a lost web update, which restarts the ring).
replaying = st.lists(
    st.tuples(
        st.lists(accepted_records, min_size=1, max_size=4),
        st.sampled_from([("take", "web"), ("take", "web"), ("take", "tui"), ("lose", "web")]),
    ),
    min_size=2,
    max_size=12,
).map(lambda blocks: [("start", ""), *(op for records, last in blocks for op in (*records, last))])


@settings(max_examples=300, deadline=None)
@given(replaying, subscriptions)
def test_a_merged_replay_is_exact_for_full_and_narrowed_clients(
    ops: list[Accepted | tuple[str, str]], subscription: dict[str, frozenset[str] | None]
) -> None:
    # given histories whose resumes replay several updates
    model = _history(ops, ResumeRing(span_s=1e9, max_entries=10**9, max_bytes=10**12))
    for since in _candidates(model):
        answer = model.resume(since, model.epoch)
        if not isinstance(answer, Recovered) or not answer.entries:
            continue
        # when the replay is merged into one update, as the hub sends it
        one = _merged(answer)
        (entry,) = one.entries
        # then a full client applies it exactly (its base_seq at or below since), in both formats
        _check_exact(model, since, one)
        # and so does a narrowed one, from its view at since
        view = copy.deepcopy(filter_snapshot(model.states[(model.epoch, since)], subscription))
        apply_changes(view, filter_changes(msgpack.unpackb(entry.msgpack)["changes"], subscription))
        assert view == filter_snapshot(model.states[(model.epoch, answer.seq)], subscription)
