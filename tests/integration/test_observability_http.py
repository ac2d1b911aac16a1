"""`/metrics`, `/health/ready`, `/debug`, `/api/v1/state` and `/api/v1/clients` through Django's
test client, against the real Redis and PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import redis
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.db import connections
from django.test import AsyncClient, Client
from prometheus_client.parser import text_string_to_metric_families

from history.stream_group import GROUP
from shared.keys import RedisNames
from shared.supervision import TaskSupervisor
from support.processes import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db]


@pytest.fixture
def prefix(deployment_prefix: str) -> str:
    """This test's deployment prefix (tests/integration/conftest.py)."""
    return deployment_prefix


@pytest.fixture
def store(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def staff(client: Client, django_user_model: type[User]) -> Client:
    client.force_login(django_user_model.objects.create_user("ops", "", "pw-1", is_staff=True))
    return client


@pytest.fixture
def user(client: Client, django_user_model: type[User]) -> Client:
    client.force_login(django_user_model.objects.create_user("quant", "", "pw-1"))
    return client


def beat(
    store: redis.Redis,
    prefix: str,
    *,
    age_s: float = 0.0,
    failed_tasks: dict[str, str] | None = None,
    **backends: bool,
) -> None:
    """Write a worker heartbeat as the leader does."""
    body = {
        "worker": "w1",
        "seq": 42,
        "at": time.time() - age_s,
        "backends": backends,
        "failed_tasks": failed_tasks or {},
    }
    store.set(f"{prefix}:worker:heartbeat", orjson.dumps(body), px=10_000)


# --- /metrics -----------------------------------------------------------------------------------


def families(text: str) -> dict[str, Any]:
    return {family.name: family for family in text_string_to_metric_families(text)}


def test_metrics_serves_loopback_clients(client: Client) -> None:
    response = client.get("/metrics", REMOTE_ADDR="127.0.0.1")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    found = families(response.content.decode())
    for name in (
        "dashboard_connected_clients",
        "dashboard_messages_sent",
        "dashboard_messages_received",
        "dashboard_broadcast_latency_seconds",
        "dashboard_serialization_duration_seconds",
        "dashboard_message_size_bytes",
        "dashboard_client_subscriptions",
        "dashboard_active_connections",
        "dashboard_resyncs",
        "dashboard_kicks",
        "django_http_requests_before_middlewares",
    ):
        assert name in found, name


def test_metrics_serves_ipv6_loopback(client: Client) -> None:
    assert client.get("/metrics", REMOTE_ADDR="::1").status_code == 200


def test_metrics_refuses_other_addresses(client: Client) -> None:
    response = client.get("/metrics", REMOTE_ADDR="10.1.2.3")
    assert response.status_code == 401
    assert response.json()["error"] == "not_authenticated"
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_metrics_public_serves_everyone(client: Client, settings: Any) -> None:
    settings.CONFIG = settings.CONFIG.model_copy(update={"metrics_public": True})
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 200


# --- /health/ready --------------------------------------------------------------------------------


def test_ready_with_a_live_worker(client: Client, prefix: str, store: redis.Redis) -> None:
    # given a fresh heartbeat with one backend down, and two rows waiting for the recorder
    beat(store, prefix, order_service=True, strategy_service=False)
    store.xadd(f"{prefix}:history", {"row": "1"})
    store.xadd(f"{prefix}:history", {"row": "2"})
    # when
    response = client.get("/health/ready")
    # then a backend down is listed, but does not make the process unready
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready"
    checks = body["checks"]
    assert checks["redis"]["status"] == "up"
    assert checks["database"]["status"] == "up"
    assert checks["worker"]["status"] == "up"
    assert checks["worker"]["seq"] == 42
    assert 0 <= checks["worker"]["age_s"] < 5
    assert checks["backends"] == {
        "order_service": {"status": "up"},
        "strategy_service": {"status": "down"},
    }
    assert checks["history_queue"] == {"depth": 2}


def test_not_ready_without_a_worker(client: Client, prefix: str) -> None:
    response = client.get("/health/ready")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "not_ready"
    assert body["checks"]["worker"]["status"] == "down"
    assert body["checks"]["redis"]["status"] == "up"


def test_not_ready_with_a_stale_heartbeat(client: Client, prefix: str, store: redis.Redis) -> None:
    beat(store, prefix, age_s=60)
    response = client.get("/health/ready")
    assert response.status_code == 503
    assert response.json()["checks"]["worker"]["age_s"] >= 60


def test_not_ready_naming_a_worker_task_that_died(
    client: Client, prefix: str, store: redis.Redis
) -> None:
    beat(store, prefix, failed_tasks={"tick-web": "RuntimeError: boom", "flush": "KeyError: 'x'"})
    response = client.get("/health/ready")
    assert response.status_code == 503
    worker = response.json()["checks"]["worker"]
    assert (worker["status"], worker["failed_tasks"]) == ("down", ["flush", "tick-web"])


def test_not_ready_while_every_recorder_has_stopped_reading(
    client: Client, prefix: str, store: redis.Redis, settings: Any
) -> None:
    # given a live worker and no recorder yet: history waits in the stream, the web is ready
    settings.CONFIG = settings.CONFIG.model_copy(update={"history_claim_idle_s": 0.5})
    beat(store, prefix)
    stream = RedisNames(prefix).history_stream
    response = client.get("/health/ready")
    assert response.status_code == 200
    assert response.json()["checks"]["recorder"] == {"status": "absent"}
    # when a recorder joins the group and is handed a row, then stops reading without leaving
    # (it died) while rows keep coming
    store.xgroup_create(stream, GROUP, id="0", mkstream=True)
    store.xadd(stream, {"row": "1"})
    store.xreadgroup(GROUP, "recorder-1", {stream: ">"}, count=1)
    store.xadd(stream, {"row": "2"})
    assert client.get("/health/ready").json()["checks"]["recorder"]["status"] == "up"

    def unready() -> bool:
        beat(store, prefix)  # keep the worker's side fresh: only the recorder may fail
        return client.get("/health/ready").status_code == 503

    wait_until(unready, timeout=10, what="readiness to notice the silent recorder")
    checks = client.get("/health/ready").json()["checks"]
    assert checks["recorder"]["status"] == "down"
    assert checks["recorder"]["consumers"] == 1
    # then a read (a recorder alive again) makes the process ready again
    store.xreadgroup(GROUP, "recorder-1", {stream: ">"}, count=1)
    response = client.get("/health/ready")
    assert response.status_code == 200, response.json()
    assert response.json()["checks"]["recorder"]["status"] == "up"


def test_not_ready_without_redis(client: Client, settings: Any) -> None:
    settings.CONFIG = settings.CONFIG.model_copy(
        update={"redis_url": "redis://127.0.0.1:1/0"}  # nothing listens on port 1
    )
    response = client.get("/health/ready")
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["redis"]["status"] == "down"
    assert checks["database"]["status"] == "up"


def test_ready_refuses_other_methods(client: Client) -> None:
    assert client.post("/health/ready").status_code == 405


# --- /debug, /api/v1/state, /api/v1/clients -----------------------------------------------------


def write_snapshot(store: redis.Redis, prefix: str) -> None:
    """A shared snapshot at seq 7 as the worker would leave it."""
    record = {"symbol": "BTCUSDT", "last_price": 10.5}
    store.hset(f"{prefix}:state:market_data", "BTCUSDT", orjson.dumps(record))
    store.hset(f"{prefix}:state:orders", "list", orjson.dumps([{"id": "o1"}, {"id": "o2"}]))
    store.hset(f"{prefix}:state:account", "record", orjson.dumps({"equity": 1.0}))
    store.set(f"{prefix}:state:seq", 7)


def test_debug_refuses_anonymous_and_non_staff(
    client: Client, django_user_model: type[User], prefix: str
) -> None:
    assert client.get("/debug").status_code == 401
    client.force_login(django_user_model.objects.create_user("quant", "", "pw-1"))
    response = client.get("/debug")
    assert response.status_code == 403
    assert response.json()["error"] == "permission_denied"


def test_debug_serves_staff_the_whole_state(staff: Client, prefix: str, store: redis.Redis) -> None:
    write_snapshot(store, prefix)
    body = staff.get("/debug").json()
    assert body["sequence"] == 7
    assert body["timestamp"].endswith("Z")
    assert body["counts"] == {
        "market_data": 1,
        "orders": 2,
        "positions": 0,
        "account": 1,
        "strategies": 0,
    }
    assert body["data"]["market_data"]["BTCUSDT"]["last_price"] == 10.5


def test_state_refuses_anonymous(client: Client, prefix: str) -> None:
    assert client.get("/api/v1/state").status_code == 401


def test_state_serves_the_snapshot_data(user: Client, prefix: str, store: redis.Redis) -> None:
    write_snapshot(store, prefix)
    response = user.get("/api/v1/state")
    assert response.status_code == 200
    data = response.json()
    channels = {"market_data", "orders", "positions", "account", "strategies"}
    assert set(data) == channels | {"seq", "epoch"}
    assert data["seq"] == 7
    assert data["orders"] == [{"id": "o1"}, {"id": "o2"}]
    assert data["account"] == {"equity": 1.0}


def test_clients_refuses_anonymous_and_non_staff(user: Client, prefix: str) -> None:
    assert user.get("/api/v1/clients").status_code == 403
    user.logout()
    assert user.get("/api/v1/clients").status_code == 401


def test_clients_lists_presence_for_staff(staff: Client, prefix: str, store: redis.Redis) -> None:
    entry = {
        "id": "p1-1",
        "type": "web",
        "format": "json",
        "subscriptions": ["market_data"],
        "remote_addr": "127.0.0.1",
        "connected_at": "2026-01-01T00:00:00Z",
        "process": "p1",
        "messages_sent": 3,
    }
    store.hset(f"{prefix}:presence:p1", "p1-1", orjson.dumps(entry))
    response = staff.get("/api/v1/clients")
    assert response.status_code == 200
    assert response.json() == {"clients": [entry]}


async def test_a_background_loop_that_dies_makes_the_process_unready_until_it_runs_again(
    async_client: AsyncClient, prefix: str, store: redis.Redis
) -> None:
    # given a ready process (a live worker's heartbeat) with a supervised loop of this process
    # that fails for as long as its dependency is broken
    beat(store, prefix)
    broken = True
    runs = 0

    async def loop() -> None:
        nonlocal runs
        runs += 1
        if broken:
            raise ConnectionError("the loop's dependency is away")
        await asyncio.Event().wait()

    supervisor = TaskSupervisor("test")
    supervisor.start("feed", loop)
    try:
        # when it has died, then readiness is 503 and names it
        while runs == 0:  # noqa: ASYNC110  # stepping the loop until the loop has run once
            await asyncio.sleep(0.01)
        response = await async_client.get("/health/ready")
        assert response.status_code == 503
        tasks = response.json()["checks"]["tasks"]
        assert tasks["status"] == "down"
        assert tasks["down"] == ["test-feed"]
        assert "dependency is away" in tasks["loops"]["test-feed"]["error"]
        # and once the dependency is back, the loop is restarted and the process ready again
        broken = False
        deadline = asyncio.get_running_loop().time() + 10
        while (response := await async_client.get("/health/ready")).status_code != 200:
            assert asyncio.get_running_loop().time() < deadline, response.json()
            await asyncio.sleep(0.1)
        assert response.json()["checks"]["tasks"]["loops"]["test-feed"]["status"] == "up"
    finally:
        await supervisor.stop()
        # The database check ran in asgiref's thread: close its connection there, or the test
        # database cannot be dropped after the run.
        await sync_to_async(connections.close_all)()
