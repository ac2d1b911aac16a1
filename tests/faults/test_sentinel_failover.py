"""Redis Sentinel failover on the real topology: the master is SIGKILLed under load.

A master, a replica and three sentinels of the test's own; the web process, two workers, the
recorder and the simulator, all configured with the sentinels only (no Redis address). Every
process must follow the promoted replica by itself, clients must see ticks again within the
failover time + 2 s, and the history stream may lose only what replication had not copied.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.request import urlopen

import pytest

from shared.keys import RedisNames
from shared.redis_clients import RedisTarget, sync_client
from support.processes import wait_until
from support.sentinel_topology import MASTER_NAME, SentinelTopology, watch_failover
from tests.e2e.stack import Stack
from tests.faults.test_faults import (
    Follower,
    _appended,
    _rows,
    following,
    leader,
    process,
    readiness,
    running_desk,
    settle_and_compare,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.faults]

TICKS_PER_S = 100  # running_desk's simulator rate
# The issue's bound: ticks flow again within the sentinels' failover time plus this.
FOLLOW_BUDGET_S = 2.0
# A second of wall-clock microseconds: far more changes than the test makes, far less than a seq
# restarted at the wall clock jumps by.
SEQ_RESTART_JUMP = 1_000_000


@pytest.fixture
def sentinels(tmp_path: Path) -> Iterator[SentinelTopology]:
    topology = SentinelTopology(tmp_path / "redis")
    try:
        topology.start()
        yield topology
    finally:
        topology.stop()


@pytest.fixture
def desk(sentinels: SentinelTopology, tmp_path: Path) -> Iterator[Stack]:
    """One web process, two workers (the first leads), the recorder and the simulator."""
    stack = Stack(redis_url=f"redis://127.0.0.1:{sentinels.master.port}/0", log_dir=tmp_path)
    # The test's own client follows the failover too, through the product's factory.
    stack.redis.close()
    target = RedisTarget(
        sentinels=tuple(("127.0.0.1", s.port) for s in sentinels.sentinels),
        master_name=MASTER_NAME,
    )
    stack.redis = sync_client(target, socket_timeout=2, socket_connect_timeout=2)
    del stack.env["DASHBOARD_REDIS_URL"]  # the sentinels are the only address given
    stack.env["DASHBOARD_REDIS_SENTINELS"] = sentinels.sentinel_addresses
    stack.env["DASHBOARD_REDIS_MASTER_NAME"] = MASTER_NAME
    with running_desk(stack, webs=1):
        yield stack


def recovery_s(arrivals: list[tuple[float, str, int]], killed_at: float) -> float:
    """Seconds from the kill to the first frame after the longest silence that followed it.

    Frames already on their way when Redis died may still arrive just after the kill; the
    outage is the longest gap between two frames that ends after it.
    """
    times = [t for t, _, _ in arrivals]
    later = [i for i, t in enumerate(times) if t > killed_at and i > 0]
    first = max(later, key=lambda i: times[i] - max(times[i - 1], killed_at))
    return times[first] - killed_at


def after(follower: Follower, killed_at: float) -> list[tuple[float, str, int]]:
    """The follower's frames since the kill (time since it, type, seq): a failure's evidence."""
    return [(round(t - killed_at, 3), k, s) for t, k, s in follower.arrivals if t > killed_at]


def metric(port: int, name: str) -> float | None:
    """One sample of the web process's `/metrics` (served to loopback)."""
    with urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return None


async def test_sigkill_of_the_redis_master(desk: Stack, sentinels: SentinelTopology) -> None:
    stack = desk
    port = stack.web_ports[0]
    status, body = await asyncio.to_thread(readiness, port)
    assert (status, body["checks"]["redis"]["role"]) == (200, "master"), body
    clients = [stack.ws_url(port, type="tui", format="msgpack"), stack.ws_url(port)]
    async with following(clients) as followers:
        # given updates flowing to clients of a desk that talks to Redis through sentinels
        while min(len(f.arrivals) for f in followers) < 10:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        first_leader = leader(stack)
        seq_before = max(f.seq for f in followers)
        # when the master is killed outright
        killed_at = time.monotonic()
        sentinels.master.kill()
        # then the sentinels promote the replica...
        failover_s = await asyncio.to_thread(watch_failover, sentinels, since=killed_at, timeout=30)
        # ...and every client sees new ticks within the failover time + 2 s
        deadline = killed_at + failover_s + FOLLOW_BUDGET_S + 10
        while time.monotonic() < deadline and any(  # noqa: ASYNC110
            f.seq <= seq_before or f.arrivals[-1][0] < killed_at + failover_s + 0.5
            for f in followers
        ):
            await asyncio.sleep(0.05)
        recoveries = [recovery_s(f.arrivals, killed_at) for f in followers]
        leader_changed = leader(stack) != first_leader
        assert all(f.seq > seq_before for f in followers), [f.seq for f in followers]
        assert max(recoveries) <= failover_s + FOLLOW_BUDGET_S, (recoveries, failover_s)
        assert all(f.snapshots <= 2 for f in followers), [after(f, killed_at) for f in followers]
        # the lease and the shared snapshot continued on the promoted replica: a leader that
        # found no snapshot would restart the seq at the wall clock in microseconds, millions
        # past it (CHANGELOG, "Changed"), where continuing adds one per change
        assert leader(stack) is not None
        assert 0 <= stack.seq() - seq_before < SEQ_RESTART_JUMP
        # every process is still running, and the web process names its Redis role and the
        # failover it followed
        assert all(p.alive() for p in stack.processes), [p.args for p in stack.processes]
        # (ready again once the worker's heartbeat, which expired during the outage, is back)
        await asyncio.to_thread(
            wait_until, lambda: readiness(port)[0] == 200, timeout=10, what="readiness"
        )
        assert (await asyncio.to_thread(readiness, port))[1]["checks"]["redis"]["role"] == "master"
        assert await asyncio.to_thread(metric, port, "dashboard_redis_failovers_total") == 1
        await settle_and_compare(stack, followers)
    # then the history stream lost at most what replication had not copied, and it is counted
    workers = ("worker-1", "worker-2")
    for worker in workers:
        process(stack, worker).terminate()
    appended = sum(_appended(process(stack, w).output()) for w in workers)
    stream = RedisNames(stack.prefix).history_stream
    wait_until(lambda: stack.redis.xlen(stream) == 0, timeout=60, what="the stream to drain")
    rows = _rows(stack.env["DASHBOARD_DATABASE_URL"])
    lost = appended - rows
    print(
        json.dumps(
            {
                "failover_s": round(failover_s, 3),
                "sigkill_to_first_update_s": [round(r, 3) for r in recoveries],
                "resync_snapshots": [f.snapshots - 1 for f in followers],
                "leader_changed": leader_changed,
                "history_appended": appended,
                "history_rows": rows,
                "history_lost": lost,
            }
        )
    )
    # never more rows than were appended (replays are idempotent); the loss is bounded by what
    # one second of ticks appends, far above what replication on loopback lags by
    assert 0 <= lost <= TICKS_PER_S
