"""History benchmark: COPY load rate, and query latency through the selectors and the HTTP API.

Creates the database `dashboard_bench` (dropped at the end unless `--keep`), migrates it, and
loads `--rows` market-data rows (20 symbols over `--days` days) through the recorder's own write
path (its `BatchWriter`, batches overlapped as the recorder overlaps them: the Python split of
batch k+1 while PostgreSQL writes batch k; binary COPY into the typed staging table, then one
INSERT ... SELECT into the tick table feeding the 1-minute candles), in recorder-sized batches.
Then, over
random (symbol, UTC day) pairs:
- `page`: one limit=100 page of one symbol's day, newest first;
- `candles`: one symbol's whole day of 1-minute candles (1,440 buckets: two pages of 1,000);
each measured directly (the selectors, on Django's connection) and through the HTTP API
(Django's test client in this process: URL routing, middleware, session auth, DRF, JSON).

Run: `.venv/bin/python bench/history.py [--rows 10000000] [--keep] [--load-only]`. Needs
PostgreSQL (DASHBOARD_DATABASE_URL's server). Last line: one JSON object of the figures.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BENCH_DB = os.environ.get("DASHBOARD_BENCH_DATABASE", "dashboard_bench")
SYMBOLS = [f"SYM{i:02d}USDT" for i in range(20)]


def _server_url(database: str) -> str:
    base = os.environ.get("DASHBOARD_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/dashboard")
    return urlsplit(base)._replace(path=f"/{database}").geturl()


def _admin(statement: sql.Composed) -> None:
    with psycopg.connect(_server_url("postgres"), autocommit=True) as conn:
        conn.execute(statement)


def create_database() -> str:
    """(Re)create the bench database and migrate it; return its URL."""
    _admin(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(BENCH_DB)))
    _admin(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(BENCH_DB)))
    url = _server_url(BENCH_DB)
    env = {**os.environ, "DASHBOARD_DATABASE_URL": url, "DASHBOARD_SECRET_KEY": "bench"}
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--no-input", "-v", "0"],
        cwd=ROOT,
        env=env,
        check=True,
    )
    return url


def rows(total: int, days: int, end: datetime) -> Iterator[Any]:
    """`total` market-data rows spread evenly over `days` days before `end`, round-robin symbols."""
    from aggregation.history_log import content_key, row_key
    from history.stream_rows import StreamRow, row_key_parts

    start = end - timedelta(days=days)
    step_us = days * 86_400_000_000 // total
    rng = random.Random(7)
    prices = [1000.0 * (i + 1) for i in range(len(SYMBOLS))]
    for n in range(total):
        k = n % len(SYMBOLS)
        prices[k] = max(0.01, prices[k] + rng.gauss(0, 0.5))
        moment = start + timedelta(microseconds=n * step_us)
        stamp = moment.isoformat(timespec="microseconds").replace("+00:00", "Z")
        record = {
            "symbol": SYMBOLS[k],
            "last_price": round(prices[k], 2),
            "bid_price": round(prices[k] - 0.5, 2),
            "ask_price": round(prices[k] + 0.5, 2),
            "volume_24h": 1e6 + n,
            "updated_at": stamp,
        }
        record_json = orjson.dumps(record)
        key = row_key(content_key("market_data", record_json))
        yield StreamRow(
            stream_ms=int(moment.timestamp() * 1000),
            stream_seq=n,
            channel="market_data",
            seq=n + 1,
            received_at=moment + timedelta(microseconds=250),
            record_json=record_json.decode(),
            # the key every current worker sends: the input's content hash (issue 14)
            row_key=key,
            # what `parse_entry` keeps of an entry besides its JSON
            record=record,
            parts=row_key_parts(key),
        )


def _backend_cpu_s(pid: int) -> float | None:
    """CPU seconds used so far by the PostgreSQL backend `pid` (None unless on this machine)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load(url: str, total: int, days: int, batch: int, end: datetime) -> dict[str, float]:
    """Write the rows through the recorder's write path; time only the writes.

    The recorder's path is its `BatchWriter` (own connection, retries) with batches
    overlapped as `Recorder.step` overlaps them: batch k+1 is prepared in Python
    (`services.batch_prepare`) while the writer's thread has PostgreSQL write batch k, and
    handed over once k committed. The rows are generated beforehand, a chunk at a time with
    nothing in flight, so that the timed part holds the write path only (in the recorder that
    is where the Redis read and the entries' parse go).

    Also the CPU time of the writes on each side (this process, both threads, and the
    connection's backend when PostgreSQL runs on this machine): on a shared machine the
    wall-clock rate measures the other load as much as the write path; CPU per row does much
    less.
    """
    import logging
    import threading

    from history.batch_writer import BatchWriter
    from history.services import batch_prepare
    from shared.throttled_log import ThrottledLog

    writing = python_cpu = 0.0
    started = time.perf_counter()
    written = 0
    stop = threading.Event()
    writer = BatchWriter(url, throttled=ThrottledLog(logging.getLogger("bench"), interval_s=10))
    try:
        assert writer.write(batch_prepare([]), stop) is not None  # connect, partitions ahead
        backend = writer.backend_pid
        assert backend is not None
        backend_cpu = _backend_cpu_s(backend)
        generated = rows(total, days, end)
        chunk_rows = batch * _CHUNK_BATCHES
        while chunk := list(itertools.islice(generated, chunk_rows)):
            t0, c0 = time.perf_counter(), time.process_time()
            in_flight: Future[Any] | None = None
            for start in range(0, len(chunk), batch):
                prepared = batch_prepare(chunk[start : start + batch])
                if in_flight is not None:
                    written += _written(in_flight)
                in_flight = writer.submit(prepared, stop)
            if in_flight is not None:
                written += _written(in_flight)
            writing += time.perf_counter() - t0
            python_cpu += time.process_time() - c0
            print(f"  loaded {written:>11,} rows, {written / writing:,.0f} rows/s")
        backend_end = _backend_cpu_s(backend)
    finally:
        writer.shutdown()
    with psycopg.connect(url, autocommit=True) as conn:
        # The steady state: autovacuum and autoanalyze have seen the loaded tables.
        conn.execute("VACUUM ANALYZE history_markettick")
        conn.execute("VACUUM ANALYZE history_minutecandle")
    assert written == total, (written, total)
    figures = {
        "load_rows_per_s": written / writing,
        "load_with_generation_rows_per_s": written / (time.perf_counter() - started),
        "load_s": writing,
        "load_python_cpu_us_per_row": python_cpu / written * 1e6,
    }
    if backend_cpu is not None and backend_end is not None:
        postgres_us = (backend_end - backend_cpu) / written * 1e6
        figures["load_postgres_cpu_us_per_row"] = postgres_us
        # What one core each allows with the two sides overlapped (the busier side bounds it).
        figures["load_cpu_bound_rows_per_s"] = 1e6 / max(
            figures["load_python_cpu_us_per_row"], postgres_us
        )
    print(
        "load CPU per row: "
        + ", ".join(f"{k} {v:.2f}" for k, v in figures.items() if k.endswith("cpu_us_per_row"))
    )
    return figures


# Rows generated ahead per timed stretch, in batches (~1 kB a row in memory).
_CHUNK_BATCHES = 100


def _written(future: Future[Any]) -> int:
    result = future.result()
    assert result is not None, "the write gave up"
    inserted, refused = result
    assert not refused, refused[:3]
    return int(inserted.get("market_data", 0))


def percentiles(samples: list[float]) -> tuple[float, float]:
    """p50 and p99 of the samples, in milliseconds."""
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return cuts[49] * 1000, cuts[98] * 1000


def measure(
    name: str, fn: Callable[[str, datetime], object], days: list[datetime], n: int
) -> list[float]:
    """Call fn(symbol, day) n times on random pairs (after a warm-up); print p50/p99."""
    rng = random.Random(name)
    for _ in range(min(20, n)):
        fn(rng.choice(SYMBOLS), rng.choice(days))
    samples = []
    for _ in range(n):
        symbol, day = rng.choice(SYMBOLS), rng.choice(days)
        t0 = time.perf_counter()
        fn(symbol, day)
        samples.append(time.perf_counter() - t0)
    p50, p99 = percentiles(samples)
    print(f"{name:<24} p50 {p50:7.2f} ms   p99 {p99:7.2f} ms   ({n} queries)")
    return [p50, p99]


def queries(url: str, end: datetime, days: int, n: int) -> dict[str, float]:
    """Latency of the two queries, through the selectors and through HTTP."""
    from django.contrib.auth.models import User
    from django.db import connection
    from django.test import Client

    from history.selectors import candle_list, history_list

    first_day = (end - timedelta(days=days)).replace(hour=0, minute=0, second=0, microsecond=0)
    whole_days = [first_day + timedelta(days=d + 1) for d in range(days - 1)]
    one_day = timedelta(days=1)

    def page_sql(symbol: str, day: datetime) -> object:
        page = history_list(
            kind="market_data", symbol=symbol, start=day, end=day + one_day, before=None, limit=100
        )
        assert len(page.items) == 100
        return page

    def candles_sql(symbol: str, day: datetime) -> object:
        got, before = 0, None
        for _ in range(3):
            page = candle_list(
                symbol=symbol,
                step=timedelta(minutes=1),
                start=day,
                end=day + one_day,
                before=before,
                limit=1000,
            )
            got += len(page.items)
            if (before := page.next) is None:
                break
        assert got == 1440, got
        return got

    user, _ = User.objects.get_or_create(username="bench")
    client = Client(HTTP_HOST="localhost")
    client.force_login(user)

    def get(params: dict[str, str]) -> dict[str, Any]:
        response = client.get("/api/v1/history", params)
        assert response.status_code == 200, response.content[:300]
        body: dict[str, Any] = response.json()
        return body

    def iso(moment: datetime) -> str:
        return moment.isoformat().replace("+00:00", "Z")

    def page_http(symbol: str, day: datetime) -> object:
        params = {"type": "market_data", "symbol": symbol, "from": iso(day)}
        body = get({**params, "to": iso(day + one_day), "limit": "100"})
        assert len(body["data"]) == 100
        return body

    def candles_http(symbol: str, day: datetime) -> object:
        params = {"type": "market_data", "symbol": symbol, "interval": "1m", "limit": "1000"}
        params |= {"from": iso(day), "to": iso(day + one_day)}
        got, cursor = 0, None
        for _ in range(3):
            body = get(params | ({"cursor": cursor} if cursor else {}))
            got += len(body["data"])
            if (cursor := body["next"]) is None:
                break
        assert got == 1440, got
        return body

    figures: dict[str, float] = {}
    for name, fn in (
        ("page_sql", page_sql),
        ("page_http", page_http),
        ("candles_1m_day_sql", candles_sql),
        ("candles_1m_day_http", candles_http),
    ):
        p50, p99 = measure(name, fn, whole_days, n)
        figures[f"{name}_p50_ms"], figures[f"{name}_p99_ms"] = p50, p99
    connection.close()
    return figures


# The tick table's day partitions, indexes and TOAST included (the parent itself holds nothing).
_SIZE = """SELECT sum(pg_total_relation_size(inhrelid)) FROM pg_inherits
           WHERE inhparent = 'history_markettick'::regclass"""


def export_and_prune(end: datetime, days: int) -> dict[str, float]:
    """A whole day of every symbol's ticks exported as CSV (rows/s), then that day pruned.

    The export is the view's own body iterator (server-side cursor, CSV encoding), read to the
    end; the prune drops the oldest day (run last: it changes the data).
    """
    import asyncio

    from django.db import connection

    from history.export import export_body
    from history.params import parse_export_query
    from history.services import history_prune

    first_day = (end - timedelta(days=days)).replace(hour=0, minute=0, second=0, microsecond=0)
    day = first_day + timedelta(days=1)
    query = parse_export_query(
        {
            "type": ["market_data"],
            "format": ["csv"],
            "from": [day.isoformat()],
            "to": [(day + timedelta(days=1)).isoformat()],
        },
        max_days=1,
    )

    async def read() -> tuple[int, int]:
        lines = size = 0
        async for chunk in export_body(query, None):
            lines += chunk.count(b"\n")
            size += len(chunk)
        return lines - 1, size  # less the header

    t0 = time.perf_counter()
    exported, size = asyncio.run(read())
    export_s = time.perf_counter() - t0
    print(f"export: a day of ticks as CSV, {exported:,} rows, {exported / export_s:,.0f} rows/s")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM history_markettick WHERE time < %s", [first_day + timedelta(1)]
        )
        row = cursor.fetchone()
    pruned_rows = int(row[0]) if row else 0
    t0 = time.perf_counter()
    history_prune(keep_from=(first_day + timedelta(days=1)).date())
    prune_s = time.perf_counter() - t0
    print(f"prune: the oldest day ({pruned_rows:,} ticks) in {prune_s * 1000:.1f} ms")
    connection.close()
    return {
        "export_day_rows": exported,
        "export_rows_per_s": exported / export_s,
        "export_mb": size / 2**20,
        "prune_day_rows": pruned_rows,
        "prune_day_ms": prune_s * 1000,
    }


def main() -> None:
    """Load, measure, print; drop the database unless --keep."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--batch", type=int, default=5000, help="rows per write (the recorder's)")
    parser.add_argument("--queries", type=int, default=500, help="samples per measurement")
    parser.add_argument("--keep", action="store_true", help=f"keep the {BENCH_DB} database")
    parser.add_argument("--skip-load", action="store_true", help="reuse a kept database")
    parser.add_argument(
        "--load-only", action="store_true", help="measure the load and size, no queries"
    )
    args = parser.parse_args()
    if args.days < 2 or args.rows < args.days * 1440 * len(SYMBOLS):
        parser.error("need >= 2 days and a tick per symbol-minute (rows >= days * 28,800)")
    end = datetime(2026, 1, 31, tzinfo=UTC)  # fixed, so that a kept database can be reused
    figures: dict[str, float] = {"rows": args.rows}
    url = _server_url(BENCH_DB)
    # Django (the selectors, the test client) talks to the bench database.
    os.environ["DASHBOARD_DATABASE_URL"] = url
    os.environ.setdefault("DASHBOARD_SECRET_KEY", "bench")
    os.environ.setdefault("DASHBOARD_HISTORY_REQUESTS_PER_MINUTE", "1000000")  # not throttled
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard_project.settings")
    import django

    django.setup()
    try:
        if not args.skip_load:
            url = create_database()
            print(f"loading {args.rows:,} rows into {BENCH_DB} in batches of {args.batch:,}")
            figures |= load(url, args.rows, args.days, args.batch, end)
            print(f"load: {figures['load_rows_per_s']:,.0f} rows/s in the write path")
        with psycopg.connect(url) as conn:
            size = conn.execute(_SIZE).fetchone()
        total = int(size[0]) if size and size[0] else 0
        figures["table_with_indexes_mb"] = total / 2**20
        figures["bytes_per_tick"] = total / args.rows
        print(
            f"table with indexes: {figures['table_with_indexes_mb']:,.0f} MB, "
            f"{figures['bytes_per_tick']:.1f} bytes a tick"
        )
        if not args.load_only:
            figures |= queries(url, end, args.days, args.queries)
            figures |= export_and_prune(end, args.days)
    finally:
        if not args.keep:
            _admin(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(BENCH_DB))
            )
    print(json.dumps({k: round(v, 3) for k, v in figures.items()}))


if __name__ == "__main__":
    main()
