"""Acknowledged history appends: what `WAIT 1 <ms>` after each flush costs per tick.

Replication is asynchronous, so a Redis failover loses the history rows the master had not yet
sent to its replica (docs/OPERATIONS.md, "Redis high availability"). Waiting after each append
batch until one replica has acknowledged it (`WAIT 1 <timeout>`) closes that window, at the
price of one replica round trip per batch. This measures it with the worker's own append path
(`aggregation.history_log.HistoryLog`, its Lua script) against a private master and replica on
loopback: for several batch sizes (the worker flushes every 50 ms, so 100 ticks/s make batches
of 5), the time per batch and per row, without and with the WAIT, and how many batches the
replica had not acknowledged within the timeout.

Run: `.venv/bin/python bench/acked_appends.py [--batches 500] [--sizes 1,5,50,500]`.
Needs redis-server. Last line: one JSON object of the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aggregation.history_log import HistoryLog  # noqa: E402
from shared.redis_clients import RedisTarget, async_client  # noqa: E402
from support.sentinel_topology import RedisNode  # noqa: E402

WAIT_TIMEOUT_MS = 100  # a replica that is further behind than this is reported, not waited for
# A market tick as the worker records it (channel, seq, received_at, record): ~200 bytes.
RECORD = {
    "symbol": "BTCUSDT",
    "bid": 65000.5,
    "ask": 65001.0,
    "last": 65000.75,
    "volume": 12.5,
    "updated_at": "2026-01-01T00:00:00.000Z",
}


async def measure(url: str, *, size: int, batches: int, wait: bool) -> dict[str, float]:
    """Append `batches` batches of `size` rows; the median and p99 per batch, in µs."""
    client = async_client(RedisTarget(url=url), socket_timeout=5, socket_connect_timeout=2)
    stream = f"bench:acked:{size}:{int(wait)}"
    # The append is fenced on the leader lease: hold it, as the leading worker does.
    leader_key = f"{stream}:leader"
    await client.set(leader_key, "bench")
    log = HistoryLog(
        client, stream=stream, capacity=100_000_000, leader_key=leader_key, owner="bench"
    )
    durations: list[float] = []
    unacked = 0
    try:
        for n in range(batches):
            for i in range(size):
                log.record("market_data", n * size + i, RECORD)
            started = time.perf_counter()
            await log.flush()
            if wait and int(await client.wait(1, WAIT_TIMEOUT_MS)) < 1:
                unacked += 1
            durations.append((time.perf_counter() - started) * 1e6)
        await client.delete(stream, leader_key)
    finally:
        await client.aclose()
    durations.sort()
    median = statistics.median(durations)
    return {
        "batch_us_p50": round(median, 1),
        "batch_us_p99": round(durations[int(len(durations) * 0.99) - 1], 1),
        "row_us_p50": round(median / size, 2),
        "unacked_batches": unacked,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=500)
    parser.add_argument("--sizes", default="1,5,50,500")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    figures: dict[str, object] = {"batches": args.batches, "wait_timeout_ms": WAIT_TIMEOUT_MS}
    with tempfile.TemporaryDirectory() as workdir:
        master, replica = RedisNode(Path(workdir), "master"), RedisNode(Path(workdir), "replica")
        data = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        try:
            master.start("--port", str(master.port), *data)
            replica.start("--port", str(replica.port), *data, "--replicaof", "127.0.0.1",
                          str(master.port))  # fmt: skip
            with master.client() as probe:
                deadline = time.monotonic() + 20
                while probe.info("replication").get("slave0", {}).get("state") != "online":
                    assert time.monotonic() < deadline, "the replica did not sync"
                    time.sleep(0.05)
            url = f"redis://127.0.0.1:{master.port}/0"
            print(
                f"{'rows/batch':>10} {'mode':>6} {'p50 µs':>9} {'p99 µs':>9} {'µs/row':>8} unacked"
            )
            for size in sizes:
                results = {
                    mode: asyncio.run(
                        measure(url, size=size, batches=args.batches, wait=mode == "WAIT")
                    )
                    for mode in ("plain", "WAIT")
                }
                for mode, result in results.items():
                    print(
                        f"{size:>10} {mode:>6} {result['batch_us_p50']:>9} "
                        f"{result['batch_us_p99']:>9} {result['row_us_p50']:>8} "
                        f"{result['unacked_batches']:.0f}"
                    )
                    figures[f"{mode}_{size}"] = result
                extra = results["WAIT"]["batch_us_p50"] - results["plain"]["batch_us_p50"]
                figures[f"wait_extra_us_per_row_{size}"] = round(extra / size, 2)
                print(f"{'':>10} WAIT costs {extra:.0f} µs per batch, {extra / size:.2f} µs/row")
        finally:
            replica.stop()
            master.stop()
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
