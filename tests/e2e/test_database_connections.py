"""A web process's PostgreSQL connections stay within its pool under any HTTP load.

Django serves each request's synchronous work in a thread of its own under ASGI; with
persistent connections every such thread kept one open, so a flood of probes left dozens
behind. The server side is what runs out, so the count is taken there (pg_stat_activity).
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import httpx
import psycopg
import pytest

from tests.e2e.stack import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

POOL_MAX = 4
REQUESTS = 400  # the probe of issue 13: 400 requests ...
CONCURRENCY = 20  # ... 20 at a time


def server_connections(database_url: str) -> int:
    """Connections the PostgreSQL server holds open to the stack's database (not ours)."""
    parts = urlsplit(database_url)
    database = parts.path.lstrip("/")
    with psycopg.connect(parts._replace(path="/postgres").geturl(), autocommit=True) as admin:
        row = admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (database,)
        ).fetchone()
    assert row is not None
    return int(row[0])


class Sampler:
    """Samples the server's connection count in the background; keeps the highest seen."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self.peak = 0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            count = await asyncio.to_thread(server_connections, self.database_url)
            self.peak = max(self.peak, count)
            await asyncio.sleep(0.02)

    def __enter__(self) -> Sampler:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()


@pytest.fixture
def web(fresh_stack: Stack) -> tuple[Stack, int]:
    """One web process whose database pool holds at most POOL_MAX connections."""
    port = fresh_stack.start_web(
        DASHBOARD_DATABASE_POOL_MAX_SIZE=str(POOL_MAX),
        # the flood is of connections, not of one token's history requests (a throttle's test)
        DASHBOARD_HISTORY_REQUESTS_PER_MINUTE="1000000",
    )
    return fresh_stack, port


async def flood(port: int, token: str) -> list[httpx.Response]:
    """REQUESTS requests, CONCURRENCY at a time, alternating readiness probes and history."""
    paths = ["/health/ready", "/api/v1/history?type=market_data&symbol=BTCUSDT&limit=50"]
    limits = httpx.Limits(max_connections=CONCURRENCY)
    gate = asyncio.Semaphore(CONCURRENCY)
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}",
        headers={"Authorization": f"Bearer {token}"},
        limits=limits,
        timeout=30,
    ) as client:

        async def one(i: int) -> httpx.Response:
            async with gate:
                return await client.get(paths[i % 2])

        return await asyncio.gather(*(one(i) for i in range(REQUESTS)))


async def test_connections_stay_within_the_pool_under_a_flood(web: tuple[Stack, int]) -> None:
    # given: a web process, and the history token issued before the count starts
    stack, port = web
    token = stack.token
    database_url = stack.env["DASHBOARD_DATABASE_URL"]

    # when: readiness probes and history reads arrive 20 at a time
    with Sampler(database_url) as sampler:
        responses = await flood(port, token)
        after = server_connections(database_url)

    # then: every request was served, and the server never held more than the pool
    history = [r for r in responses if r.url.path == "/api/v1/history"]
    ready = [r for r in responses if r.url.path == "/health/ready"]
    failed = [r.text for r in history if r.status_code != 200]
    assert failed == [], failed[:3]
    assert all(r.json()["checks"]["database"]["status"] == "up" for r in ready)
    assert sampler.peak <= POOL_MAX, f"peak {sampler.peak} server connections > {POOL_MAX}"
    assert after <= POOL_MAX, f"{after} server connections left > {POOL_MAX}"
    # and a request after the flood still gets a connection (none was leaked from the pool)
    async with httpx.AsyncClient(timeout=30) as client:
        last = await client.get(f"http://127.0.0.1:{port}/health/ready")
    assert last.json()["checks"]["database"]["status"] == "up"


def test_a_statement_past_the_timeout_is_cancelled(fresh_stack: Stack) -> None:
    sleep = "from django.db import connection; connection.cursor().execute('SELECT pg_sleep(2)')"

    with pytest.raises(AssertionError, match="canceling statement due to statement timeout"):
        fresh_stack.manage("shell", "-c", sleep, DASHBOARD_DATABASE_STATEMENT_TIMEOUT_MS="100")
    # 0 turns it off (what a long migration runs with)
    fresh_stack.manage(
        "shell",
        "-c",
        sleep.replace("pg_sleep(2)", "pg_sleep(0.3)"),
        DASHBOARD_DATABASE_STATEMENT_TIMEOUT_MS="0",
    )
