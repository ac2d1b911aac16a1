"""Ingest benchmark: how many ticks/s the real worker applies, with broadcast and history on.

Starts `manage.py run_aggregator` (its own key prefix, backends pointed nowhere) and, in a
separate process, a publisher that sends market-data ticks for 20 symbols into real Redis at a
set rate, step by step. For each step the worker's own per-second log lines give the ticks it
applied and the largest producer-to-state lag. The sustained figure is the highest step the
worker kept up with: applied >= 99 % of published and lag under 1 s.

Run: `.venv/bin/python bench/ingest.py [--rates 10000,20000,30000,40000] [--seconds 6]`.
Needs Redis (DASHBOARD_REDIS_URL). Last line: one JSON object of the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from support.processes import ManagedProcess, isolated_env, wait_until  # noqa: E402

SYMBOLS = [f"SYM{i}USDT" for i in range(20)]
BATCH = 200  # ticks per pipeline round trip


def publish(url: str, prefix: str, rate: int, seconds: float, counter: Any) -> None:
    """Publish `rate` ticks/s for `seconds`, in paced batches; count what was sent."""
    client = redis.Redis.from_url(url)
    pipe = client.pipeline(transaction=False)
    sent = 0
    start = time.perf_counter()
    price = 100.0
    while (elapsed := time.perf_counter() - start) < seconds:
        due = int(rate * elapsed) - sent
        if due < BATCH:
            time.sleep(0.001)
            continue
        wall = time.time()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(wall)) + f"{wall % 1:.6f}"[1:] + "Z"
        for i in range(BATCH):
            price += 0.01
            symbol = SYMBOLS[(sent + i) % len(SYMBOLS)]
            payload = {
                "symbol": symbol,
                "last_price": price,
                "bid_price": price - 0.5,
                "ask_price": price + 0.5,
                "volume_24h": 1e6 + price,
                "updated_at": stamp,
            }
            pipe.publish(f"{prefix}market_data:{symbol}", orjson.dumps(payload))
        pipe.execute()
        sent += BATCH
    counter.value = sent
    client.close()


def stats_lines(worker: ManagedProcess, since: int) -> list[dict[str, Any]]:
    """The worker's 'worker stats' log lines after the first `since` lines of its output."""
    lines = worker.output().splitlines()[since:]
    out = []
    for line in lines:
        if '"worker.stats"' in line:
            out.append(json.loads(line))
    return out


def main() -> None:
    """Run each rate step and print the table; the last line is the JSON object."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="10000,20000,30000,40000,50000")
    parser.add_argument("--seconds", type=float, default=6.0)
    args = parser.parse_args()
    url = os.environ.get("DASHBOARD_REDIS_URL", "redis://127.0.0.1:6379/0")
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    env = isolated_env(
        prefix=prefix,
        redis_url=url,
        DASHBOARD_LOG_LEVEL="INFO",
        DASHBOARD_HISTORY_STREAM_MAXLEN="5000000",
    )
    log_path = Path(f"/tmp/{prefix}-worker.log")
    worker = ManagedProcess(["run_aggregator"], env=env, log_path=log_path)
    client = redis.Redis.from_url(url)
    figures: dict[str, float] = {}
    sustained = 0
    try:
        probes = iter(range(1, 1_000_000))

        def subscribed() -> bool:  # publish until the worker's subscription is live
            probe = {"symbol": "PROBE", "last_price": float(next(probes))}
            client.publish(f"{prefix}:market_data:PROBE", orjson.dumps(probe))
            return int(client.get(f"{prefix}:state:seq") or 0) > 0

        wait_until(subscribed, timeout=60, what="the worker's subscription")
        print(
            f"{'rate/s':>8} {'published':>10} {'applied':>10} {'applied/s':>10} {'lag max s':>10}"
        )
        for rate in (int(r) for r in args.rates.split(",")):
            mark = len(worker.output().splitlines())
            seq_before = int(client.get(f"{prefix}:state:seq") or 0)
            counter = multiprocessing.Value("q", 0)
            publisher = multiprocessing.Process(
                target=publish, args=(url, f"{prefix}:", rate, args.seconds, counter)
            )
            started = time.perf_counter()
            publisher.start()
            publisher.join()
            published = counter.value

            def caught_up(target: int = seq_before + published) -> bool:
                return int(client.get(f"{prefix}:state:seq") or 0) >= target

            with contextlib.suppress(AssertionError):  # a worker that cannot keep up shows below
                wait_until(caught_up, timeout=30, what="the worker to catch up")
            elapsed = time.perf_counter() - started
            applied = int(client.get(f"{prefix}:state:seq") or 0) - seq_before

            def two_lines(since: int = mark) -> bool:
                return len(stats_lines(worker, since)) >= 2

            wait_until(two_lines, timeout=5, what="stats")
            lags = [line["lag_max_s"] for line in stats_lines(worker, mark)]
            lag = max(lags) if lags else float("nan")
            rate_applied = applied / max(elapsed, args.seconds)
            print(f"{rate:>8} {published:>10} {applied:>10} {rate_applied:>10,.0f} {lag:>10.3f}")
            figures[f"applied_per_s_at_{rate}"] = round(rate_applied)
            figures[f"lag_max_s_at_{rate}"] = round(lag, 3)
            if applied >= 0.99 * published and lag < 1.0:
                sustained = rate
        figures["sustained_ticks_per_s"] = sustained
        history = client.xlen(f"{prefix}:history")
        print(
            f"sustained: {sustained:,} ticks/s (lag < 1 s, >= 99 % applied); "
            f"history rows {history:,}"
        )
    finally:
        worker.terminate()
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
