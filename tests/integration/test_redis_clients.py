"""The client factory against real servers: the role it reports, and a failover it follows.

The shared Redis answers the URL shape; a private master, replica and three sentinels (started
here, so that killing the master harms nobody) answer the Sentinel shape.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from django.test import Client
from prometheus_client import REGISTRY

from shared.redis_clients import (
    RedisTarget,
    async_client,
    channel_layer_host,
    server_role,
    sync_client,
)
from support.sentinel_topology import MASTER_NAME, SentinelTopology, watch_failover

pytestmark = [pytest.mark.integration]


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
def sentinels(tmp_path: Path) -> Iterator[SentinelTopology]:
    topology = SentinelTopology(tmp_path)
    try:
        topology.start()
        yield topology
    finally:
        topology.stop()


def sentinel_target(topology: SentinelTopology) -> RedisTarget:
    return RedisTarget(
        sentinels=tuple(("127.0.0.1", s.port) for s in topology.sentinels),
        master_name=MASTER_NAME,
    )


async def test_a_url_client_reports_the_master_role(redis_url: str) -> None:
    client = async_client(RedisTarget(url=redis_url), socket_timeout=2, socket_connect_timeout=2)
    try:
        assert await server_role(client) == "master"
        assert sample("dashboard_redis_role", role="master") == 1
        assert sample("dashboard_redis_role", role="replica") == 0
    finally:
        await client.aclose()


@pytest.mark.django_db
def test_readiness_refuses_a_replica(
    sentinels: SentinelTopology, client: Client, settings: Any
) -> None:
    # given a process configured, by mistake, with the replica's address
    url = f"redis://127.0.0.1:{sentinels.replica.port}/0"
    settings.CONFIG = settings.CONFIG.model_copy(update={"redis_url": url})
    # then it is not ready, and says why
    response = client.get("/health/ready")
    check = response.json()["checks"]["redis"]
    assert response.status_code == 503
    assert check["status"] == "down"
    assert (check["role"], check["error"]) == ("replica", "talks to a read-only replica")
    assert sample("dashboard_redis_role", role="replica") == 1


@pytest.mark.slow
async def test_clients_follow_a_failover_and_count_it(sentinels: SentinelTopology) -> None:
    # given an asyncio and a blocking client of the master behind the sentinels
    target = sentinel_target(sentinels)
    aclient = async_client(target, socket_timeout=2, socket_connect_timeout=2)
    client = sync_client(target, socket_timeout=2, socket_connect_timeout=2)
    try:
        await aclient.set("before", "1")
        assert client.get("before") == b"1"
        failovers = sample("dashboard_redis_failovers_total")
        # when the master dies and the sentinels promote the replica
        sentinels.master.kill()
        await asyncio.to_thread(watch_failover, sentinels, since=time.monotonic(), timeout=30)
        # then both clients reach the new master by themselves, with what the replica had
        deadline = time.monotonic() + 10
        while True:
            try:
                await aclient.set("after", "2")
                break
            except redis.ConnectionError:  # the first command may meet the dead connection
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
        assert client.get("before") == b"1"
        assert await aclient.get("after") == b"2"
        assert await server_role(aclient) == "master"
        # and the process counted one failover, however many clients it holds
        assert sample("dashboard_redis_failovers_total") == failovers + 1
    finally:
        await aclient.aclose()
        client.close()


def test_the_channel_layer_host_builds_a_sentinel_pool_with_our_timeouts(
    sentinels: SentinelTopology,
) -> None:
    # Both channels-redis layers build their pools with `create_pool`. A round trip through a
    # layer is the failover test's (tests/faults); a layer's own test here would leak the
    # Sentinel clients channels-redis creates and never closes (harmless for a process's
    # lifetime, a ResourceWarning in a test).
    from channels_redis.utils import create_pool

    target = RedisTarget(
        sentinels=sentinel_target(sentinels).sentinels, master_name=MASTER_NAME, db=3
    )
    pool = create_pool(channel_layer_host(target, socket_connect_timeout=2))
    assert pool.service_name == MASTER_NAME
    assert (pool.connection_kwargs["db"], pool.connection_kwargs["socket_connect_timeout"]) == (
        3,
        2,
    )
    for sentinel in pool.sentinel_manager.sentinels:
        assert sentinel.connection_pool.connection_kwargs["socket_timeout"] == 1.0


def preflight(**env: str) -> subprocess.CompletedProcess[str]:
    """`scripts/preflight.py` with the suite's environment plus `env`."""
    return subprocess.run(
        [sys.executable, "scripts/preflight.py"],
        cwd=Path(__file__).resolve().parents[2],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_preflight_finds_the_master_through_the_sentinels(sentinels: SentinelTopology) -> None:
    done = preflight(
        DASHBOARD_REDIS_SENTINELS=sentinels.sentinel_addresses,
        DASHBOARD_REDIS_MASTER_NAME=MASTER_NAME,
    )
    assert done.returncode == 0, done.stderr


def test_preflight_names_the_sentinels_when_none_answers() -> None:
    done = preflight(DASHBOARD_REDIS_SENTINELS="127.0.0.1:1", DASHBOARD_REDIS_MASTER_NAME="desk")
    assert done.returncode == 1
    first = done.stderr.splitlines()[0]
    assert (
        first
        == "preflight: no sentinel answers with a master: master 'desk' of sentinels 127.0.0.1:1"
    )
