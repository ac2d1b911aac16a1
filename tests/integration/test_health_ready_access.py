"""`/health/ready` tells anyone each check's status, and only staff or loopback the details
(error strings name hosts and users; the worker's id names its host)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import redis
from django.contrib.auth.models import User
from django.test import Client

from access.services import token_issue

pytestmark = [
    pytest.mark.integration,
    pytest.mark.django_db,
    pytest.mark.usefixtures("fresh_access_state"),
]

OUTSIDE = "203.0.113.20"  # a documentation address: not loopback
WORKER_ID = "desk-host-7-4242-abcdef"  # as a worker names itself: host, pid, random


@pytest.fixture
def live_worker(deployment_prefix: str, redis_url: str) -> Iterator[None]:
    """A fresh heartbeat of a worker with one backend down."""
    client = redis.Redis.from_url(redis_url)
    body = {"worker": WORKER_ID, "seq": 42, "at": time.time(), "backends": {"order_service": False}}
    client.set(f"{deployment_prefix}:worker:heartbeat", orjson.dumps(body), px=10_000)
    yield
    client.close()


@pytest.fixture
def redis_down(settings: Any) -> None:
    """Redis unreachable at a URL carrying a user name and a password."""
    settings.CONFIG = settings.CONFIG.model_copy(
        update={"redis_url": "redis://ops-user:hunter2@127.0.0.1:1/0"}  # nothing on port 1
    )


def leaks(body: dict[str, Any]) -> list[str]:
    text = orjson.dumps(body).decode()
    return [
        word
        for word in (WORKER_ID, "desk-host", "127.0.0.1", "ops-user", "hunter2", '"error"')
        if word in text
    ]


@pytest.mark.usefixtures("live_worker")
def test_anonymous_callers_get_each_checks_status_without_details(client: Client) -> None:
    response = client.get("/health/ready", REMOTE_ADDR=OUTSIDE)
    assert response.status_code == 200
    body = response.json()
    assert leaks(body) == []
    checks = body["checks"]
    assert body["status"] == "ready"
    assert set(checks) == {
        "redis",
        "database",
        "worker",
        "backends",
        "history_queue",
        "recorder",
        "tasks",
    }
    assert checks["worker"]["status"] == "up"
    assert "id" not in checks["worker"]
    assert checks["backends"] == {"order_service": {"status": "down"}}
    # the same shape as the detailed answer, less the detail
    detailed = client.get("/health/ready").json()  # the test client speaks from 127.0.0.1
    assert detailed["checks"]["worker"]["id"] == WORKER_ID
    assert set(detailed["checks"]) == set(checks)


@pytest.mark.usefixtures("redis_down")
def test_anonymous_callers_do_not_see_error_strings(client: Client) -> None:
    response = client.get("/health/ready", REMOTE_ADDR=OUTSIDE)
    assert response.status_code == 503
    body = response.json()
    assert body["checks"]["redis"] == {"status": "down"}
    assert body["checks"]["worker"] == {"status": "unknown"}
    assert leaks(body) == []
    detailed = client.get("/health/ready").json()
    assert "127.0.0.1" in detailed["checks"]["redis"]["error"]


@pytest.mark.usefixtures("redis_down")
@pytest.mark.parametrize(("staff", "detail"), [(True, True), (False, False)])
def test_a_staff_session_sees_details_from_anywhere(
    client: Client, django_user_model: type[User], staff: bool, detail: bool
) -> None:
    client.force_login(django_user_model.objects.create_user("ops", "", "pw-1", is_staff=staff))
    body = client.get("/health/ready", REMOTE_ADDR=OUTSIDE).json()
    assert ("error" in body["checks"]["redis"]) is detail


@pytest.mark.usefixtures("redis_down")
def test_a_staff_token_sees_details_and_a_bad_token_is_anonymous(client: Client) -> None:
    staff_key = token_issue(name="ops", staff=True)[1]
    plain_key = token_issue(name="quant")[1]
    for key, detail in ((staff_key, True), (plain_key, False), ("dsk_wrong", False)):
        response = client.get(
            "/health/ready", REMOTE_ADDR=OUTSIDE, HTTP_AUTHORIZATION=f"Bearer {key}"
        )
        assert response.status_code == 503  # a probe is never refused for its credentials
        assert ("error" in response.json()["checks"]["redis"]) is detail
