"""Encoding a cadence's update once per format and sending it to that cadence's group."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import msgpack
import orjson

from aggregation.core.state import Update
from aggregation.events import StateUpdate


def rfc3339_now() -> str:
    """The current UTC time as RFC 3339 with milliseconds, e.g. 2026-11-23T12:00:00.250Z."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def update_event(cadence: str, update: Update) -> StateUpdate:
    """Build the group event for `update`: the client frame encoded as JSON and MessagePack."""
    frame: dict[str, Any] = {
        "type": "update",
        "seq": update.seq,
        "timestamp": rfc3339_now(),
        "changes": update.changes,
    }
    return {
        "type": "state.update",
        "cadence": cadence,
        "seq": update.seq,
        "base_seq": update.base_seq,
        "sent_at": time.time(),
        "json": orjson.dumps(frame).decode(),
        "msgpack": msgpack.packb(frame),
    }
