"""The suite runs against the real stores: PostgreSQL through Django, Redis through redis-py."""

from __future__ import annotations

import pytest
import redis
from django.db import connection


@pytest.mark.integration
@pytest.mark.django_db
def test_database_is_real_postgresql() -> None:
    assert connection.vendor == "postgresql"
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_database()")
        (name,) = cursor.fetchone()
    assert name.startswith("test_")  # pytest-django's test database, never the real one


@pytest.mark.integration
def test_redis_is_real_and_prefix_keys_are_isolated(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    assert redis_client.ping() is True
    assert "redis_version" in redis_client.info("server")
    redis_client.set(f"{key_prefix}probe", "1")
    assert list(redis_client.scan_iter(match=f"{key_prefix}*")) == [f"{key_prefix}probe".encode()]
