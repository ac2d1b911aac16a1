"""A client's `refresh` requests, within their own rate (`client_refreshes_per_s`).

A refresh is answered by a snapshot at once while the rate allows; past it, every further
request is merged into one answered as soon as the rate allows again (a refresh is idempotent:
one snapshot answers them all). Like access/ratelimit.py's buckets, a policy object the
consumer holds, one per connection.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from access.ratelimit import TokenBucket
from realtime import metrics


class RefreshMerger:
    """Answers refreshes through `answer` (a snapshot), at most at `bucket`'s rate."""

    def __init__(self, bucket: TokenBucket, answer: Callable[[], None]) -> None:
        self._bucket = bucket
        self._answer = answer
        self._pending: asyncio.TimerHandle | None = None

    @property
    def pending(self) -> bool:
        """Whether a merged refresh is due later."""
        return self._pending is not None

    def request(self) -> None:
        """A `refresh`: answered now, or merged into the one that is due."""
        if self._pending is not None:
            metrics.WS_BOUNDS.labels("refresh_merged").inc()
            return  # one is already due: it answers this one too
        if self._bucket.take(time.monotonic()):
            self._answer()
            return
        metrics.WS_BOUNDS.labels("refresh_merged").inc()
        # The bucket holds a whole token again after 1/rate seconds.
        self._pending = asyncio.get_running_loop().call_later(1 / self._bucket.rate, self._due)

    def cancel(self) -> None:
        """Drop the merged refresh, if one is due (the connection closed)."""
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None

    def _due(self) -> None:
        self._pending = None
        self.request()
