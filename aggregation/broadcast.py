"""Encoding a cadence's update once per format (`aggregation/ticks.py` sends it to the group)."""

from __future__ import annotations

import time
from typing import Any

import msgpack
import orjson

from shared.clock import rfc3339_now
from shared.core.state import Update
from shared.events import StateUpdate


def update_event(cadence: str, update: Update, *, epoch: str) -> StateUpdate:
    """Build the group event for `update` in lineage `epoch`: the client frame encoded as JSON
    and MessagePack."""
    frame: dict[str, Any] = {
        "type": "update",
        "seq": update.seq,
        "base_seq": update.base_seq,
        "epoch": epoch,
        "timestamp": rfc3339_now(),
        "changes": update.changes,
    }
    return {
        "type": "state.update",
        "cadence": cadence,
        "seq": update.seq,
        "base_seq": update.base_seq,
        "epoch": epoch,
        "sent_at": time.time(),
        "json": orjson.dumps(frame).decode(),
        "msgpack": msgpack.packb(frame),
    }
