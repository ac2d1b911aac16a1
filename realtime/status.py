"""The `status` frame of contract 4.1: is the feed alive, as this web process sees it.

The worker leading the desk writes a heartbeat to Redis every `leader_renew_ms` (its id, seq,
time, each backend's up/down, and the ingest lag; aggregation/worker.py); the key expires a
lease after its last write. Each hub reads it once a second in one loop (never per client),
turns it into a `FeedStatus`, and writes a `status` frame to every client of the process when
the status *changed state* (the worker or a backend went up or down) and otherwise every
`ws_status_interval_s`. A frame is encoded once per format and shared by every client; a
client that connects gets the latest one after its snapshot.

The top half (FeedStatus, read_heartbeat, StatusBoard) is pure: no Redis, no Django, no clock
of its own. `StatusFeed` is the loop that feeds it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import orjson

from realtime.protocol import Format, encode

log = logging.getLogger(__name__)

# How often a hub reads the heartbeat: the worker writes it every second (leader_renew_ms), so
# reading faster learns nothing new; slower would add up to that much to "worker down".
POLL_S: Final = 1.0
_WARN_EVERY_S: Final = 30.0  # Redis away: one warning per 30 s, not one per poll


@dataclass(frozen=True, slots=True)
class FeedStatus:
    """What the status frame says, apart from seq and epoch."""

    worker_up: bool
    heartbeat_age_s: float | None  # None: no heartbeat at all (expired, or Redis unreachable)
    backends: Mapping[str, bool] = field(default_factory=dict)
    ingest_lag_s: float | None = None  # None: no timestamped input since the last heartbeat

    @property
    def state(self) -> tuple[bool, tuple[tuple[str, bool], ...]]:
        """What "changed state" compares: worker up/down and each backend's up/down."""
        return self.worker_up, tuple(sorted(self.backends.items()))

    def frame(self, *, seq: int, epoch: str | None) -> dict[str, Any]:
        """The `status` server message at `seq` of `epoch`."""
        return {
            "type": "status",
            "seq": seq,
            "epoch": epoch,
            "worker": {"up": self.worker_up, "heartbeat_age_s": self.heartbeat_age_s},
            "backends": dict(self.backends),
            "ingest_lag_s": self.ingest_lag_s,
        }


UNKNOWN: Final = FeedStatus(worker_up=False, heartbeat_age_s=None)


def read_heartbeat(raw: bytes | None, *, now: float, max_age_s: float) -> FeedStatus:
    """The status a heartbeat value (or its absence) says, at wall-clock time `now`.

    The worker is up while its heartbeat exists and is at most `max_age_s` old (the setting
    `/health/ready` uses). The backends are the worker's own view of them; with no heartbeat
    nobody polls them, so none is reported. A value that is not a heartbeat counts as none.
    """
    if raw is None:
        return UNKNOWN
    try:
        beat = orjson.loads(raw)
        age = max(0.0, now - float(beat["at"]))
        backends = {str(k): bool(v) for k, v in (beat.get("backends") or {}).items()}
        lag = beat.get("ingest_lag_s")
        lag = None if lag is None else max(0.0, float(lag))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
        return UNKNOWN
    return FeedStatus(
        worker_up=age <= max_age_s,
        heartbeat_age_s=round(age, 3),
        backends=backends,
        ingest_lag_s=None if lag is None else round(lag, 4),
    )


class StatusBoard:
    """The latest status, when to broadcast it, and its frames encoded once per format."""

    def __init__(self, *, interval_s: float) -> None:
        self.interval_s = interval_s
        self.current = UNKNOWN
        self._sent_at: float | None = None  # when the last broadcast went out (loop time)
        self._encoded: dict[Format, str | bytes] = {}
        self._encoded_for: tuple[FeedStatus, int, str | None] | None = None

    def observe(self, status: FeedStatus, *, now: float) -> bool:
        """Take a new reading; whether it must be broadcast now (changed state, or due)."""
        changed = status.state != self.current.state
        self.current = status
        if changed or self._sent_at is None or now - self._sent_at >= self.interval_s:
            self._sent_at = now
            return True
        return False

    def frames(self, *, seq: int, epoch: str | None) -> Mapping[Format, str | bytes]:
        """The current status encoded in each format, at `seq` (once per reading and seq)."""
        key = (self.current, seq, epoch)
        if key != self._encoded_for:
            frame = self.current.frame(seq=seq, epoch=epoch)
            self._encoded = {fmt: encode(frame, fmt) for fmt in Format}
            self._encoded_for = key
        return self._encoded


class HeartbeatSource(Protocol):
    """The one Redis call the status needs (redis.asyncio.Redis has it)."""

    def get(self, name: str) -> Awaitable[Any]:
        """The value at `name`, or None."""


class StatusFeed:
    """A hub's status loop: reads the heartbeat, keeps the board, says when to broadcast."""

    def __init__(
        self,
        redis: HeartbeatSource,
        *,
        key: str,
        max_age_s: float,
        interval_s: float,
        wall_clock: Callable[[], float],
    ) -> None:
        self.board = StatusBoard(interval_s=interval_s)
        self._redis = redis
        self._key = key
        self._max_age_s = max_age_s
        self._wall_clock = wall_clock
        self._warned = float("-inf")

    async def read(self) -> bool:
        """Take one reading; whether it must be broadcast now."""
        loop = asyncio.get_running_loop()
        try:
            raw = await self._redis.get(self._key)
        except Exception as exc:  # Redis away: as good as no heartbeat, which is what it means
            raw = None
            if loop.time() - self._warned >= _WARN_EVERY_S:
                self._warned = loop.time()
                log.warning("hub cannot read the worker heartbeat", extra={"error": str(exc)})
        status = read_heartbeat(
            raw if isinstance(raw, bytes) else None,
            now=self._wall_clock(),
            max_age_s=self._max_age_s,
        )
        return self.board.observe(status, now=loop.time())

    async def run(self, broadcast: Callable[[], None]) -> None:
        """Read every POLL_S; call `broadcast` whenever the board says so."""
        while True:
            await asyncio.sleep(POLL_S)
            if await self.read():
                broadcast()
