"""Rate limiting, pure (no Django, no I/O, no clock of its own): callers pass `now`.

Why not a library: a per-connection bucket is two floats updated on each message, with no lock
(one event loop owns it) and no storage; `limits` and `pyrate-limiter` are window/storage-based,
key every call by a string and cost several times more per message (bench/core-sized budget).
The few lines below are property-tested in tests/unit/test_ratelimit.py.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


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
    # Made at the first event: an empty deque already holds a 64-slot block (~0.7 KiB), and
    # every connection has a window that most never use.
    times: deque[float] | None = None

    def add(self, now: float) -> int:
        """Record one event at `now`; return how many fall in the window (at most `limit`)."""
        self._expire(now)
        if self.times is None:
            self.times = deque()
        self.times.append(now)
        if len(self.times) > self.limit:
            self.times.popleft()
        return len(self.times)

    def full(self, now: float) -> bool:
        """Whether `limit` events happened within the window before `now`."""
        self._expire(now)
        return self.times is not None and len(self.times) >= self.limit

    def _expire(self, now: float) -> None:
        times = self.times
        while times and times[0] <= now - self.window:
            times.popleft()


class _LeastRecentlyUsed(Generic[T]):
    """A dict of per-key limiters bounded at `size`, dropping the least recently used key.

    Bounded so that a flood from many addresses cannot grow memory; a dropped key starts again
    fresh, which only ever errs towards letting a client in.
    """

    def __init__(self, size: int, make: Callable[[], T]) -> None:
        self.size, self.make = size, make
        self.entries: OrderedDict[str, T] = OrderedDict()

    def get(self, key: str) -> T:
        """The key's limiter, made on first use."""
        found = self.entries.get(key)
        if found is None:
            found = self.entries[key] = self.make()
            if len(self.entries) > self.size:
                self.entries.popitem(last=False)
        else:
            self.entries.move_to_end(key)
        return found


class KeyedBuckets:
    """One TokenBucket per key (a client address)."""

    def __init__(self, *, rate: float, burst: int, size: int = 100_000) -> None:
        self._buckets = _LeastRecentlyUsed(size, lambda: TokenBucket(rate, burst))

    def take(self, key: str, now: float) -> bool:
        """Take one token from `key`'s bucket at `now`."""
        return self._buckets.get(key).take(now)


class KeyedWindows:
    """One EventWindow per key (failed authentications per address)."""

    def __init__(self, *, limit: int, window: float, size: int = 100_000) -> None:
        self._windows = _LeastRecentlyUsed(size, lambda: EventWindow(limit, window))

    def add(self, key: str, now: float) -> int:
        """Record one event for `key`; return its count in the window."""
        return self._windows.get(key).add(now)

    def full(self, key: str, now: float) -> bool:
        """Whether `key` reached the limit within the window."""
        found = self._windows.entries.get(key)
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
