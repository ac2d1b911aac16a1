"""Fixtures shared by every test: real Redis and real PostgreSQL on loopback, isolated per test."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import redis
import redis.asyncio as aioredis
from django.conf import settings


@pytest.fixture
def redis_url() -> str:
    """The Redis the suite runs against (DASHBOARD_REDIS_URL, default 127.0.0.1:6379/0)."""
    return str(settings.CONFIG.redis_url)


@pytest.fixture
def key_prefix() -> str:
    """A prefix unique to this test for Redis keys, channels and streams (ends with ':')."""
    return f"test-{uuid.uuid4().hex[:12]}:"


def _delete_prefixed(client: redis.Redis, prefix: str) -> None:
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)


@pytest.fixture
def redis_client(redis_url: str, key_prefix: str) -> Iterator[redis.Redis]:
    """A synchronous client; every key under `key_prefix` is deleted after the test."""
    client = redis.Redis.from_url(redis_url)
    yield client
    _delete_prefixed(client, key_prefix)
    client.close()


@pytest.fixture
async def aredis(redis_url: str, key_prefix: str) -> AsyncIterator[aioredis.Redis]:
    """An asyncio client; every key under `key_prefix` is deleted after the test."""
    client = aioredis.Redis.from_url(redis_url)
    yield client
    keys = [key async for key in client.scan_iter(match=f"{key_prefix}*", count=1000)]
    if keys:
        await client.delete(*keys)
    await client.aclose()


@pytest.fixture(autouse=True)
def _history_tables_emptied(request: pytest.FixtureRequest) -> Iterator[None]:
    """After a test that committed, empty the history tables as Django's flush does the rest.

    They are `managed = False` (partitioned, created by SQL migrations), which flush skips.
    """
    yield
    marker = request.node.get_closest_marker("django_db")
    committed = "transactional_db" in request.fixturenames or "live_server" in request.fixturenames
    if marker is not None and marker.kwargs.get("transaction"):
        committed = True
    if committed:
        from tests.history_rows import history_truncate

        with request.getfixturevalue("django_db_blocker").unblock():
            history_truncate()
