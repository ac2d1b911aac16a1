"""The client side of the protocol, without I/O: frames in, state and what to do out.

`Follower.receive(frame)` applies one decoded server frame (contract sections 4 and 4.1) and
returns what the connection must do: nothing, tell the reader the state changed, ask the server
for a `refresh` (a gap), or reconnect (the server is shutting down).

Continuity: an update applies to a state at `S` when `base_seq <= S < seq` (and in the same
epoch); one with `seq <= S` is already held and skipped; anything else is a gap, and updates
are ignored until the snapshot the refresh brings. A server older than contract 4.1 sends no
`base_seq` or `epoch`: then updates newer than `S` are applied, and a change that does not apply
(ChangeConflict) is the gap. On a reconnect the follower asks to resume (`since`, `epoch`) if it
holds a state of a known epoch; the server answers `recovered` (the missed updates follow) or a
snapshot with `"recovered": false` and a reason — `outcome` says which.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from dashboard_client.changes import ChangeConflict, apply_changes


class Action(StrEnum):
    """What the connection must do after a frame."""

    NONE = "none"  # nothing changed that a reader sees
    CHANGED = "changed"  # the state, the feed status or a notice changed
    REFRESH = "refresh"  # a gap: send {"type": "refresh"}
    RECONNECT = "reconnect"  # the server is going away: reconnect after `reconnect_after_ms`


class Outcome(StrEnum):
    """How the current state was reached."""

    CONNECTING = "connecting"  # no state yet
    LIVE = "live"  # the first snapshot of this client
    RECOVERED = "recovered"  # resumed after a reconnect: the missed updates were replayed
    RESYNCED = "resynced"  # a fresh snapshot replaced the state (after a reconnect or a gap)


@dataclass(frozen=True, slots=True)
class FeedHealth:
    """The last `status` frame: is the feed behind the server alive."""

    worker_up: bool
    heartbeat_age_s: float | None
    backends: dict[str, bool] = field(default_factory=dict)
    ingest_lag_s: float | None = None

    @classmethod
    def from_frame(cls, frame: dict[str, Any]) -> FeedHealth:
        """Read a `status` frame (unknown fields ignored)."""
        worker = frame.get("worker") or {}
        age = worker.get("heartbeat_age_s")
        lag = frame.get("ingest_lag_s")
        return cls(
            worker_up=bool(worker.get("up")),
            heartbeat_age_s=None if age is None else float(age),
            backends={str(k): bool(v) for k, v in (frame.get("backends") or {}).items()},
            ingest_lag_s=None if lag is None else float(lag),
        )

    @property
    def problems(self) -> list[str]:
        """What is down, in words for a banner; empty when all is well."""
        if not self.worker_up:
            return ["worker down: no updates are coming"]
        return [f"{name} down" for name, up in sorted(self.backends.items()) if not up]


@dataclass(frozen=True, slots=True)
class Notice:
    """A staff notice: `info` or `warning`, one line of plain text (show it as text)."""

    level: str
    text: str


class Follower:
    """The state a client holds, kept by applying the server's frames in order."""

    def __init__(self) -> None:
        self.data: dict[str, Any] | None = None  # None until the first snapshot
        self.seq = 0
        self.epoch: str | None = None
        self.outcome = Outcome.CONNECTING
        self.reason: str | None = None  # why the last resync was one (the server's, or "gap")
        self.feed: FeedHealth | None = None
        self.notice: Notice | None = None
        self.reconnect_after_ms: int | None = None  # set by a shutdown frame
        self.last_error: tuple[str, str] | None = None  # (code, message) of an error frame
        self.updates = 0
        self.gaps = 0
        self.resyncs = 0
        self.recoveries = 0
        self._awaiting = True  # updates are ignored until a snapshot (or `recovered`)
        self._resuming = False  # this connection asked to resume

    def resume_query(self) -> dict[str, str]:
        """The query parameters of a resume (`since`, `epoch`), or none if it cannot resume."""
        if self.data is None or self.epoch is None:
            return {}
        return {"since": str(self.seq), "epoch": self.epoch}

    def connecting(self, *, resume: bool) -> None:
        """Called before each connection: whether it asked to resume."""
        self._awaiting = True
        self._resuming = resume
        self.reconnect_after_ms = None

    def receive(self, frame: dict[str, Any]) -> Action:
        """Apply one decoded server frame; what to do next."""
        kind = frame.get("type")
        if kind == "update":
            return self._update(frame)
        if kind == "snapshot":
            return self._snapshot(frame)
        if kind == "recovered":
            return self._recovered(frame)
        if kind == "status":
            self.feed = FeedHealth.from_frame(frame)
            return Action.CHANGED
        if kind == "notice":
            self.notice = Notice(str(frame.get("level")), str(frame.get("text")))
            return Action.CHANGED
        if kind == "shutdown":
            self.reconnect_after_ms = max(0, int(frame.get("reconnect_after_ms") or 0))
            return Action.RECONNECT
        if kind == "error":
            self.last_error = (str(frame.get("code")), str(frame.get("message")))
        return Action.NONE

    def _snapshot(self, frame: dict[str, Any]) -> Action:
        first = self.data is None
        self.data = dict(frame["data"])
        self.seq = int(frame["seq"])
        epoch = frame.get("epoch")
        self.epoch = None if epoch is None else str(epoch)
        self._awaiting = False
        if frame.get("recovered") is False:
            self.outcome, self.reason = Outcome.RESYNCED, str(frame.get("reason") or "unknown")
        elif first:
            self.outcome, self.reason = Outcome.LIVE, None
        else:  # a resume the server did not answer as one, a gap's refresh, a server resync
            self.outcome = Outcome.RESYNCED
            self.reason = "unknown" if self._resuming else self.reason
        if not first:
            self.resyncs += 1
        self._resuming = False
        return Action.CHANGED

    def _recovered(self, frame: dict[str, Any]) -> Action:
        same = (
            self._resuming
            and self.data is not None
            and frame.get("since") == self.seq
            and frame.get("epoch") == self.epoch
        )
        self._resuming = False
        if not same:  # not the resume we asked for: take nothing on trust
            return self._gap()
        self._awaiting = False
        self.outcome, self.reason = Outcome.RECOVERED, None
        self.recoveries += 1
        return Action.CHANGED

    def _update(self, frame: dict[str, Any]) -> Action:
        if self._awaiting or self.data is None:
            return Action.NONE
        epoch = frame.get("epoch")
        if epoch is not None and self.epoch is not None and epoch != self.epoch:
            return self._gap()  # seqs of another lineage: not comparable with ours
        seq = int(frame["seq"])
        if seq <= self.seq:
            return Action.NONE  # already held
        base = frame.get("base_seq")
        if base is not None and int(base) > self.seq:
            return self._gap()
        try:
            apply_changes(self.data, frame["changes"])
        except ChangeConflict:
            return self._gap()
        self.seq = seq
        self.updates += 1
        return Action.CHANGED

    def _gap(self) -> Action:
        self.gaps += 1
        self._awaiting = True
        self.reason = "gap"
        return Action.REFRESH
