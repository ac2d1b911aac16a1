"""One copy of the state per web process, fed by the update groups (design principle 5).

Bootstrapped from the shared snapshot in Redis, then kept current by applying every update the
hub receives (both cadences; the continuity rule skips what it already has). Snapshots for new
or resyncing clients come from here — encoded once per seq, format and subscription, so a
reconnect storm, or sockets of one narrowed view refreshing in a loop, cost one encoding per
seq, not one per client.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any, Literal

from realtime import metrics
from realtime.protocol import (
    Format,
    Subscription,
    encode,
    filter_snapshot,
    is_everything,
    snapshot_frame,
)
from shared.clock import rfc3339_now
from shared.core.changes import ChangeConflict, apply_changes
from shared.snapshot import SnapshotReader

log = logging.getLogger(__name__)

# Encoded snapshots kept per seq (whole, plus narrowed views): a desk's screens share a handful
# of views; past this many distinct ones within one seq the cache starts over, so many distinct
# hostile subscriptions cost encodings, never memory.
_CACHED_VIEWS = 64


class ProcessMirror:
    """The web process's copy of the state at `seq`."""

    def __init__(self, shared: SnapshotReader) -> None:
        self._shared = shared
        self.data: dict[str, Any] = {}
        self.seq = 0
        self.epoch = ""  # the lineage of `seq` (contract 4.1)
        self.loaded = False
        # by (format, view, why a resume was refused)
        self._encoded: dict[tuple[Format, frozenset[Any] | None, str | None], str | bytes] = {}
        self.encodings = 0  # how many whole snapshots were encoded (tests, metrics)

    async def load(self) -> None:
        """Replace the copy with the shared snapshot from Redis (at start and after a gap)."""
        data, seq, epoch = await self._shared.load()
        if self.loaded and seq < self.seq and epoch in (self.epoch, ""):
            # Redis lost the snapshot and the worker has not rewritten it yet: keep ours. (A
            # new lineage is loaded whatever its seq: seqs of two lineages do not compare.)
            log.warning("shared snapshot is older than the mirror", extra={"shared_seq": seq})
            return
        self.data, self.seq, self.epoch, self.loaded = data, seq, epoch, True
        self._encoded.clear()

    def apply(
        self, base_seq: int, seq: int, changes: Mapping[str, Any], epoch: str
    ) -> Literal["applied", "skip", "gap"]:
        """Apply one update if it follows what the mirror has (in the same lineage)."""
        if epoch != self.epoch:
            return "gap"  # another lineage: its seqs say nothing about ours; reload
        if seq <= self.seq:
            return "skip"
        if base_seq > self.seq:
            return "gap"
        try:
            apply_changes(self.data, changes)
        except ChangeConflict:
            log.exception("mirror diverged from the update stream")
            return "gap"
        self.seq = seq
        self._encoded.clear()
        return "applied"

    def snapshot(
        self, subscription: Subscription, fmt: Format, *, refused: str | None = None
    ) -> str | bytes:
        """The snapshot frame for `subscription`, encoded once per seq, format and view.

        `refused`: the reason a resume was refused, which the frame carries (contract 4.1).
        """
        whole = is_everything(subscription)
        key = (fmt, None if whole else frozenset(subscription.items()), refused)
        cached = self._encoded.get(key)
        if cached is None:
            started = time.perf_counter()
            data = self.data if whole else filter_snapshot(self.data, subscription)
            frame = snapshot_frame(self.seq, self.epoch, rfc3339_now(), data, refused=refused)
            cached = encode(frame, fmt)
            metrics.encoded(fmt, "snapshot", cached, started)
            if len(self._encoded) >= _CACHED_VIEWS:
                self._encoded.clear()
            self._encoded[key] = cached
            self.encodings += 1
        return cached
