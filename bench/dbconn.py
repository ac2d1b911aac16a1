"""Database connections under HTTP load: psycopg's pool against a connection per request.

Starts one web process (uvicorn) per mode on its own database, then sends `/health/ready`
probes and `/api/v1/history` reads (a token with the history scope, an empty table: the cost
measured is the connection's, not the query's), 20 at a time, and samples the PostgreSQL
server's connections to that database meanwhile (pg_stat_activity).

Modes: `pool` (`database_pool_max_size` 10, the default) and `per-request`
(`database_pool_max_size` 0: a connection opened and closed by every request).
Prints one line per mode and path (req/s, p50/p99 ms, peak and final server connections);
the last line is one JSON object of the figures.
Run: `.venv/bin/python bench/dbconn.py` (about a minute). DASHBOARD_BENCH_REQUESTS changes the
number of requests per path (2,000).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from support.processes import (  # noqa: E402
    ManagedProcess,
    free_port,
    isolated_env,
    issue_token,
    run_command,
    scratch_database,
    wait_until,
)

CONCURRENCY = 20  # issue 13's probe: 20 at a time
MODES = {"pool": "10", "per-request": "0"}
PATHS = {
    "ready": "/health/ready",
    "history": "/api/v1/history?type=market_data&symbol=BTCUSDT&limit=50",
}


def server_connections(database_url: str) -> int:
    """Connections the server holds to the database of `database_url`."""
    parts = urlsplit(database_url)
    with psycopg.connect(parts._replace(path="/postgres").geturl(), autocommit=True) as admin:
        row = admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (parts.path[1:],)
        ).fetchone()
    return int(row[0]) if row else 0


async def load(
    port: int, path: str, token: str, requests: int, database_url: str
) -> dict[str, Any]:
    """`requests` GETs of `path`, CONCURRENCY at a time; throughput, latency, connections."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    peak = 0
    done = asyncio.Event()

    async def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, await asyncio.to_thread(server_connections, database_url))
            await asyncio.sleep(0.05)

    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}",
        headers={"Authorization": f"Bearer {token}"},
        limits=httpx.Limits(max_connections=CONCURRENCY),
        timeout=60,
    ) as client:
        remaining = iter(range(requests))

        async def user() -> None:
            for _ in remaining:
                started = time.perf_counter()
                response = await client.get(path)
                latencies.append(time.perf_counter() - started)
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

        sampler = asyncio.create_task(sample())
        started = time.perf_counter()
        await asyncio.gather(*(user() for _ in range(CONCURRENCY)))
        elapsed = time.perf_counter() - started
        done.set()
        await sampler
    latencies.sort()
    return {
        "req_per_s": round(requests / elapsed),
        "p50_ms": round(statistics.median(latencies) * 1000, 1),
        "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 1),
        "peak_connections": peak,
        "final_connections": server_connections(database_url),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
    }


def main() -> None:
    """Run every mode, print the figures; the last line is JSON."""
    redis_url = os.environ.get("DASHBOARD_REDIS_URL", "redis://127.0.0.1:6379/0")
    server = os.environ.get("DASHBOARD_BENCH_PG", "postgres://postgres@127.0.0.1:5432")
    requests = int(os.environ.get("DASHBOARD_BENCH_REQUESTS", "2000"))
    prefix = f"dbconn-{uuid.uuid4().hex[:8]}"
    logs = Path("/tmp") / prefix
    logs.mkdir()
    results: dict[str, dict[str, Any]] = {}
    with scratch_database(server, prefix.replace("-", "_")) as database_url:
        base = isolated_env(
            prefix=prefix,
            redis_url=redis_url,
            DASHBOARD_DATABASE_URL=database_url,
            DASHBOARD_LOG_LEVEL="WARNING",
            DASHBOARD_HISTORY_REQUESTS_PER_MINUTE="1000000",  # connections, not the throttle
        )
        run_command(["migrate", "--no-input"], env=base, timeout=300)
        token = issue_token(f"{prefix}-bench", env=base)
        for mode, pool_size in MODES.items():
            port = free_port()
            env = {
                **base,
                "DASHBOARD_PORT": str(port),
                "DASHBOARD_DATABASE_POOL_MAX_SIZE": pool_size,
            }
            web = ManagedProcess(["serve"], env=env, log_path=logs / f"web-{mode}.log")
            try:
                wait_until(lambda: _answers(port), timeout=60, what="the web process")  # noqa: B023
                for name, path in PATHS.items():
                    figures = asyncio.run(load(port, path, token, requests, database_url))
                    results[f"{mode}_{name}"] = figures
                    print(f"{mode:>12} {name:>8}: {figures}", flush=True)
            finally:
                web.terminate()
    flat = {
        f"{run}_{key}": value
        for run, figures in results.items()
        for key, value in figures.items()
        if key != "statuses"
    }
    print(json.dumps(flat))


def _answers(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


if __name__ == "__main__":
    main()
