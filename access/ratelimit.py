"""Rate limiting, pure (no Django, no I/O, no clock of its own): callers pass `now`.

Why not a library: a per-connection bucket is two floats updated on each message, with no lock
(one event loop owns it) and no storage; `limits` and `pyrate-limiter` are window/storage-based,
key every call by a string and cost several times more per message (bench/core-sized budget).
The few lines below are property-tested in tests/unit/test_ratelimit.py.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field


@dataclass(slots=True)
class TokenBucket:
    """`rate` tokens a second up to `burst`; each event takes one or is refused."""

    rate: float
    burst: int
    tokens: float = field(init=False)
    updated: float = field(init=False, default=float("-inf"))

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.tokens = float(self.burst)

    def take(self, now: float) -> bool:
        """Take one token at time `now` (seconds, monotonic); False when none is left."""
        if self.updated != float("-inf") and now > self.updated:
            self.tokens = min(float(self.burst), self.tokens + (now - self.updated) * self.rate)
        self.updated = max(self.updated, now)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


@dataclass(slots=True)
class EventWindow:
    """Counts events in the last `window` seconds (a sliding log, capped at `limit` entries)."""

    limit: int
    window: float
    times: deque[float] = field(default_factory=deque)

    def add(self, now: float) -> int:
        """Record one event at `now`; return how many fall in the window (at most `limit`)."""
        self._expire(now)
        self.times.append(now)
        if len(self.times) > self.limit:
            self.times.popleft()
        return len(self.times)

    def full(self, now: float) -> bool:
        """Whether `limit` events happened within the window before `now`."""
        self._expire(now)
        return len(self.times) >= self.limit

    def _expire(self, now: float) -> None:
        while self.times and self.times[0] <= now - self.window:
            self.times.popleft()


class KeyedBuckets:
    """One TokenBucket per key (a client address), the least recently used dropped past `size`.

    Bounded so that a flood from many addresses cannot grow memory; a dropped key starts again
    with a full bucket, which only ever errs towards letting a client in.
    """

    def __init__(self, *, rate: float, burst: int, size: int = 100_000) -> None:
        self.rate, self.burst, self.size = rate, burst, size
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def take(self, key: str, now: float) -> bool:
        """Take one token from `key`'s bucket at `now`."""
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(self.rate, self.burst)
            if len(self._buckets) > self.size:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        return bucket.take(now)


class KeyedWindows:
    """One EventWindow per key, bounded like KeyedBuckets (failed authentications per address)."""

    def __init__(self, *, limit: int, window: float, size: int = 100_000) -> None:
        self.limit, self.window, self.size = limit, window, size
        self._windows: OrderedDict[str, EventWindow] = OrderedDict()

    def add(self, key: str, now: float) -> int:
        """Record one event for `key`; return its count in the window."""
        found = self._windows.get(key)
        if found is None:
            found = self._windows[key] = EventWindow(self.limit, self.window)
            if len(self._windows) > self.size:
                self._windows.popitem(last=False)
        else:
            self._windows.move_to_end(key)
        return found.add(now)

    def full(self, key: str, now: float) -> bool:
        """Whether `key` reached the limit within the window."""
        found = self._windows.get(key)
        return found is not None and found.full(now)


class ConnectionCounts:
    """Open connections per key (address, token) against a maximum."""

    def __init__(self, maximum: int) -> None:
        self.maximum = maximum
        self._counts: dict[str, int] = {}

    def acquire(self, key: str) -> bool:
        """Count one more connection for `key`, unless it is at the maximum."""
        count = self._counts.get(key, 0)
        if count >= self.maximum:
            return False
        self._counts[key] = count + 1
        return True

    def release(self, key: str) -> None:
        """One connection of `key` closed."""
        count = self._counts.get(key, 0) - 1
        if count > 0:
            self._counts[key] = count
        else:
            self._counts.pop(key, None)

    def count(self, key: str) -> int:
        """Open connections of `key`."""
        return self._counts.get(key, 0)
