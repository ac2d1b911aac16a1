"""Fixtures of the integration tests."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis


@pytest.fixture
def deployment_prefix(settings: Any, redis_url: str) -> Iterator[str]:
    """A `redis_key_prefix` of this test's own, set in settings.CONFIG; its keys deleted after."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    settings.CONFIG = settings.CONFIG.model_copy(update={"redis_key_prefix": name})
    yield name
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"{name}:*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def fresh_access_state() -> Iterator[None]:
    """No cached token and origin lookups or per-address counts carried between tests."""
    from access import gate
    from access.credentials import CACHE

    CACHE.clear()
    gate._limits.clear()
    yield
    CACHE.clear()
    gate._limits.clear()
