"""Two real worker processes: leader election, SIGKILL failover, SIGTERM shutdown."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest
import redis

from support.processes import ManagedProcess, isolated_env, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture
def worker_env(key_prefix: str, redis_url: str) -> dict[str, str]:
    # backends nowhere: the worker must not care
    return isolated_env(prefix=key_prefix.rstrip(":"), redis_url=redis_url)


def _leader(client: redis.Redis, prefix: str) -> bytes | None:
    value = client.get(f"{prefix}:worker:leader")
    return value if isinstance(value, bytes) else None


def _seq(client: redis.Redis, prefix: str) -> int:
    return int(client.get(f"{prefix}:state:seq") or 0)


def _tick(client: redis.Redis, key_prefix: str, symbol: str, price: float) -> None:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    payload = {"symbol": symbol, "last_price": price, "updated_at": stamp}
    client.publish(f"{key_prefix}market_data:{symbol}", orjson.dumps(payload))


def _start(env: dict[str, str], tmp_path: Path, name: str) -> ManagedProcess:
    return ManagedProcess(["run_aggregator"], env=env, log_path=tmp_path / f"{name}.log")


def test_standby_takes_over_within_5_s_of_a_sigkill_and_seq_continues(
    worker_env: dict[str, str], redis_client: redis.Redis, key_prefix: str, tmp_path: Path
) -> None:
    prefix = key_prefix.rstrip(":")
    first = _start(worker_env, tmp_path, "first")
    second: ManagedProcess | None = None
    try:
        # given a leader that has ingested ticks, and a standby
        leader_id = wait_until(lambda: _leader(redis_client, prefix), timeout=30, what="a leader")
        second = _start(worker_env, tmp_path, "second")
        wait_until(lambda: "worker started" in second.output(), timeout=30, what="the standby")
        price = 0.0

        def ticked() -> bool:
            nonlocal price
            price += 1
            _tick(redis_client, key_prefix, "BTCUSDT", price)
            return _seq(redis_client, prefix) >= 5

        wait_until(ticked, timeout=30, what="ticks mirrored")
        seq_before = _seq(redis_client, prefix)
        assert _leader(redis_client, prefix) == leader_id
        # when the leader is killed outright
        killed_at = time.monotonic()
        first.kill()
        # then the standby leads within 5 s
        new_leader = wait_until(
            lambda: (v := _leader(redis_client, prefix)) and v != leader_id and v,
            timeout=10,
            what="a new leader",
        )
        takeover_s = time.monotonic() - killed_at
        print(f"failover: standby {new_leader!r} leads {takeover_s:.2f} s after SIGKILL")
        assert takeover_s < 5.0
        # and the seq continues upward from where the shared snapshot was

        def continued() -> bool:
            _tick(redis_client, key_prefix, "ETHUSDT", price + time.monotonic())
            return _seq(redis_client, prefix) > seq_before + 2

        wait_until(continued, timeout=10, what="seq continuing after takeover")
        assert second.alive()
        assert "leading" in second.output()
    finally:
        first.terminate()
        if second is not None:
            second.terminate()


def test_sigterm_releases_the_lease_and_exits_within_10_s(
    worker_env: dict[str, str], redis_client: redis.Redis, key_prefix: str, tmp_path: Path
) -> None:
    prefix = key_prefix.rstrip(":")
    worker = _start(worker_env, tmp_path, "only")
    try:
        wait_until(lambda: _leader(redis_client, prefix), timeout=30, what="a leader")
        prices = iter(range(1, 10_000))

        def recorded() -> bool:  # publish until the subscription is live and rows flow
            _tick(redis_client, key_prefix, "BTCUSDT", float(next(prices)))
            return int(redis_client.xlen(f"{prefix}:history")) >= 5

        wait_until(recorded, timeout=10, what="history rows")
        started = time.monotonic()
        code = worker.terminate(timeout=15)
        elapsed = time.monotonic() - started
    finally:
        worker.terminate()
    assert code == 0, worker.output()[-2000:]
    assert elapsed < 10.0
    assert _leader(redis_client, prefix) is None  # released, so a standby need not wait
    assert "stepped down" in worker.output()
