"""The status frame (realtime/status.py) and the shutdown frame (realtime/shutdown.py)."""

from __future__ import annotations

import random
from collections.abc import Mapping

import msgpack
import orjson

from realtime.protocol import Format
from realtime.shutdown import announce
from realtime.status import UNKNOWN, FeedStatus, StatusBoard, read_heartbeat


def beat(at: float, **extra: object) -> bytes:
    return orjson.dumps({"worker": "w1", "seq": 7, "at": at, **extra})


def test_a_fresh_heartbeat_is_a_live_worker_with_its_backends_and_lag() -> None:
    status = read_heartbeat(
        beat(100.0, backends={"order_service": True, "strategy_service": False}, ingest_lag_s=0.02),
        now=100.25,
        max_age_s=5.0,
    )
    assert status == FeedStatus(
        worker_up=True,
        heartbeat_age_s=0.25,
        backends={"order_service": True, "strategy_service": False},
        ingest_lag_s=0.02,
    )
    assert status.frame(seq=9, epoch="e1") == {
        "type": "status",
        "seq": 9,
        "epoch": "e1",
        "worker": {"up": True, "heartbeat_age_s": 0.25},
        "backends": {"order_service": True, "strategy_service": False},
        "ingest_lag_s": 0.02,
    }


def test_no_heartbeat_an_old_one_or_garbage_is_a_worker_down() -> None:
    assert read_heartbeat(None, now=1.0, max_age_s=5.0) == UNKNOWN
    old = read_heartbeat(beat(100.0), now=105.5, max_age_s=5.0)
    assert not old.worker_up
    assert old.heartbeat_age_s == 5.5
    assert old.ingest_lag_s is None  # a heartbeat written before the lag was added
    for raw in (b"not json", b"[]", b'{"at": "soon"}', b'{"no": "at"}'):
        assert read_heartbeat(raw, now=1.0, max_age_s=5.0) == UNKNOWN, raw
    # a worker clock slightly ahead of ours is an age of 0, not a negative one
    assert read_heartbeat(beat(101.0), now=100.0, max_age_s=5.0).heartbeat_age_s == 0.0


def test_the_board_broadcasts_on_a_change_of_state_and_otherwise_every_interval() -> None:
    board = StatusBoard(interval_s=5.0)
    up = FeedStatus(worker_up=True, heartbeat_age_s=0.1, backends={"a": True})
    assert board.observe(up, now=0.0)  # the first reading always goes out
    # an age or lag that moves is not a change of state
    assert not board.observe(FeedStatus(True, 0.9, {"a": True}, 0.5), now=1.0)
    assert not board.observe(up, now=4.9)
    assert board.observe(up, now=5.0)  # due
    assert board.observe(FeedStatus(True, 0.1, {"a": False}), now=5.5)  # a backend went down
    assert board.observe(FeedStatus(False, None, {"a": False}), now=6.0)  # the worker did
    assert not board.observe(FeedStatus(False, None, {"a": False}), now=7.0)
    assert board.observe(FeedStatus(True, 0.1, {"a": False}), now=7.5)  # and came back
    assert board.observe(FeedStatus(True, 0.1, {"a": False, "b": True}), now=8.0)  # new backend


def test_frames_are_encoded_once_per_reading_and_seq() -> None:
    board = StatusBoard(interval_s=5.0)
    board.observe(FeedStatus(True, 0.1, {"a": True}), now=0.0)
    first = board.frames(seq=3, epoch=None)
    assert board.frames(seq=3, epoch=None) is first
    assert orjson.loads(first[Format.JSON])["seq"] == 3
    assert msgpack.unpackb(first[Format.MSGPACK])["worker"] == {"up": True, "heartbeat_age_s": 0.1}
    assert board.frames(seq=4, epoch=None) is not first
    assert orjson.loads(board.frames(seq=4, epoch="x")[Format.JSON])["epoch"] == "x"


class Recorder:
    def __init__(self, name: str, fmt: Format) -> None:
        self.client_id = name
        self.cadence = "web"
        self.fmt = fmt
        self.frames: list[str | bytes] = []

    def notify(self, frames: Mapping[Format, str | bytes]) -> bool:
        self.frames.append(frames[self.fmt])
        return True


def test_shutdown_tells_each_client_its_own_delay_within_the_spread() -> None:
    members = [Recorder(f"c{i}", Format.JSON if i % 2 else Format.MSGPACK) for i in range(400)]
    assert announce(members, spread_ms=1000, rng=random.Random(4)) == 400
    delays = []
    for member in members:
        (frame,) = member.frames
        decoded = orjson.loads(frame) if member.fmt is Format.JSON else msgpack.unpackb(frame)
        assert decoded.keys() == {"type", "reconnect_after_ms"}
        assert decoded["type"] == "shutdown"
        delays.append(decoded["reconnect_after_ms"])
    assert all(0 <= d < 1000 for d in delays)
    assert len(set(delays)) > 50  # spread out, not one instant for everyone
    alone = Recorder("z", Format.JSON)
    announce([alone], spread_ms=0)
    assert orjson.loads(alone.frames[0])["reconnect_after_ms"] == 0
