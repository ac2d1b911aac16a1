"""The pure rate limiters (access.ratelimit): properties over arbitrary event times."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from access.ratelimit import (
    ConnectionCounts,
    EventWindow,
    KeyedBuckets,
    KeyedWindows,
    TokenBucket,
)

rates = st.floats(min_value=0.1, max_value=1000, allow_nan=False)
bursts = st.integers(min_value=1, max_value=100)
gaps = st.lists(st.floats(min_value=0, max_value=2, allow_nan=False), min_size=1, max_size=300)


@settings(max_examples=300)
@given(rate=rates, burst=bursts, steps=gaps)
def test_a_bucket_never_allows_more_than_burst_plus_refill(
    rate: float, burst: int, steps: list[float]
) -> None:
    bucket = TokenBucket(rate, burst)
    now, allowed = 0.0, []
    for step in steps:
        now += step
        if bucket.take(now):
            allowed.append(now)
    # any window [a, b] of allowed events holds at most burst + rate * (b - a) of them
    for i, start in enumerate(allowed):
        for j in range(i, len(allowed)):
            assert j - i + 1 <= burst + rate * (allowed[j] - start) + 1e-6


@given(rate=rates, burst=bursts)
def test_a_full_bucket_allows_exactly_its_burst_at_once(rate: float, burst: int) -> None:
    bucket = TokenBucket(rate, burst)
    assert sum(bucket.take(5.0) for _ in range(burst + 10)) == burst


def test_a_bucket_refills_at_its_rate() -> None:
    bucket = TokenBucket(10, 20)
    assert sum(bucket.take(0.0) for _ in range(30)) == 20
    assert not bucket.take(0.05)  # half a token
    assert bucket.take(0.1)  # one token after 100 ms
    assert sum(bucket.take(100.0) for _ in range(30)) == 20  # capped at the burst


def test_time_going_backwards_grants_nothing() -> None:
    bucket = TokenBucket(1, 1)
    assert bucket.take(10.0)
    assert not bucket.take(5.0)
    assert not bucket.take(10.5)
    assert bucket.take(11.0)


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 1), (1, 0)])
def test_nonsense_parameters_are_refused(rate: float, burst: int) -> None:
    with pytest.raises(ValueError, match="rate"):
        TokenBucket(rate, burst)


@given(
    limit=st.integers(min_value=1, max_value=50),
    window=st.floats(min_value=0.1, max_value=10),
    steps=gaps,
)
def test_a_window_counts_the_events_of_its_last_seconds(
    limit: int, window: float, steps: list[float]
) -> None:
    events = EventWindow(limit, window)
    now, times = 0.0, []
    for step in steps:
        now += step
        times.append(now)
        count = events.add(now)
        expected = sum(1 for t in times if t > now - window)
        assert count == min(limit, expected)
        assert events.full(now) == (expected >= limit)


def test_keyed_buckets_are_independent_and_bounded() -> None:
    buckets = KeyedBuckets(rate=1, burst=2, size=3)
    assert [buckets.take("a", 0.0) for _ in range(3)] == [True, True, False]
    assert buckets.take("b", 0.0)
    for key in ("c", "d", "e"):
        buckets.take(key, 0.0)
    assert len(buckets._buckets.entries) == 3
    assert buckets.take("a", 0.0)  # evicted, so it starts again full: errs towards letting in


def test_keyed_windows_block_one_key_only() -> None:
    windows = KeyedWindows(limit=3, window=60, size=10)
    for _ in range(3):
        windows.add("10.0.0.1", 1.0)
    assert windows.full("10.0.0.1", 2.0)
    assert not windows.full("10.0.0.2", 2.0)
    assert not windows.full("10.0.0.1", 61.5)  # the window has passed


@given(st.lists(st.tuples(st.sampled_from("abc"), st.booleans()), max_size=200))
def test_connection_counts_stay_between_zero_and_the_maximum(
    operations: list[tuple[str, bool]],
) -> None:
    counts = ConnectionCounts(3)
    model = {"a": 0, "b": 0, "c": 0}
    for key, opening in operations:
        if opening:
            accepted = counts.acquire(key)
            assert accepted == (model[key] < 3)
            model[key] += accepted
        elif model[key] > 0:
            counts.release(key)
            model[key] -= 1
        assert counts.count(key) == model[key]
    assert all(0 <= counts.count(k) <= 3 for k in model)
    assert math.isclose(sum(counts.count(k) for k in model), sum(model.values()))
