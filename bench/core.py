"""Benchmark of the pure core: records applied per second, and the cost of a cadence's take.

Run: `make bench` or `.venv/bin/python bench/core.py [--records N]`. Prints human-readable lines,
then one JSON object of the figures as the last line. Single-threaded: the figures are one core's.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from shared.cadences import CADENCES
from shared.core.records import Accepted, Channel, parse_record
from shared.core.state import TradingState

MAX_BYTES = 65_536


def _market(symbol: str, price: float) -> bytes:
    return orjson.dumps(
        {
            "symbol": symbol,
            "last_price": price,
            "bid_price": price - 0.5,
            "ask_price": price + 0.5,
            "volume_24h": 1_000_000.0 + price,
            "high_24h": price * 1.01,
            "low_24h": price * 0.99,
            "updated_at": "2026-11-23T12:00:00.123456Z",
        }
    )


def _payloads(kind: Channel, count: int, rng: random.Random) -> list[bytes]:
    """Realistic payloads of one kind: 20 symbols/ids, values that change each time."""
    out = []
    for i in range(count):
        n = rng.randrange(20)
        price = 100.0 + rng.random() * 50_000
        if kind is Channel.MARKET_DATA:
            out.append(_market(f"SYM{n}USDT", price))
        elif kind is Channel.ORDERS:
            status = rng.choice(["NEW", "PARTIALLY_FILLED", "FILLED"])
            out.append(
                orjson.dumps(
                    {
                        "id": f"o{i % 300}",
                        "symbol": f"SYM{n}USDT",
                        "side": "BUY",
                        "type": "LIMIT",
                        "price": price,
                        "quantity": 1.5,
                        "filled": rng.random(),
                        "status": status,
                        "created_at": "2026-11-23T12:00:00Z",
                        "updated_at": "2026-11-23T12:00:01Z",
                    }
                )
            )
        elif kind is Channel.POSITIONS:
            qty = 0.0 if rng.random() < 0.05 else rng.random() * 10
            out.append(
                orjson.dumps(
                    {
                        "symbol": f"SYM{n}USDT",
                        "side": "LONG",
                        "quantity": qty,
                        "entry_price": price,
                        "mark_price": price * 1.001,
                        "unrealized_pnl": rng.random() * 100,
                        "realized_pnl": 1.0,
                        "updated_at": "2026-11-23T12:00:00Z",
                    }
                )
            )
        elif kind is Channel.ACCOUNT:
            out.append(
                orjson.dumps(
                    {
                        "total_balance": price,
                        "available_balance": price / 2,
                        "margin_used": price / 3,
                        "unrealized_pnl": rng.random(),
                        "balances": {"USDT": price, "BTC": 0.5},
                        "updated_at": "2026-11-23T12:00:00Z",
                    }
                )
            )
        else:
            out.append(
                orjson.dumps(
                    {
                        "id": f"s{n}",
                        "name": "grid",
                        "status": "RUNNING",
                        "pnl": rng.random() * 1000,
                        "trades": i,
                        "win_rate": 0.55,
                        "updated_at": "2026-11-23T12:00:00Z",
                    }
                )
            )
    return out


def records_per_second(kind: Channel, count: int) -> float:
    """Parse, validate and apply `count` payloads of `kind`; return records per second."""
    payloads = _payloads(kind, count, random.Random(7))
    state = TradingState(cadences=CADENCES, max_orders=100)
    start = time.perf_counter()
    for i, payload in enumerate(payloads):
        accepted = parse_record(kind, payload, max_bytes=MAX_BYTES)
        assert isinstance(accepted, Accepted)
        state.put(accepted)
        if i % 1000 == 999:  # cadences take now and then, as the worker's ticks do
            state.take_diff("web")
            state.take_diff("tui")
    return count / (time.perf_counter() - start)


def take_ms(symbols: int, changed: int, repeats: int = 200) -> float:
    """Median time of one take with `symbols` in state and `changed` of them updated."""
    state = TradingState(cadences=CADENCES, max_orders=100)
    rng = random.Random(3)
    for i in range(symbols):
        accepted = parse_record(
            Channel.MARKET_DATA, _market(f"S{i}", 100.0 + i), max_bytes=MAX_BYTES
        )
        assert isinstance(accepted, Accepted)
        state.put(accepted)
    state.take_diff("web")
    state.take_diff("tui")
    batches = []
    for _ in range(repeats):
        batch = []
        for i in rng.sample(range(symbols), changed):
            accepted = parse_record(
                Channel.MARKET_DATA, _market(f"S{i}", rng.random() * 1000), max_bytes=MAX_BYTES
            )
            assert isinstance(accepted, Accepted)
            batch.append(accepted)
        batches.append(batch)
    timings = []
    for batch in batches:
        for accepted in batch:
            state.put(accepted)
        start = time.perf_counter()
        update = state.take_diff("web")
        timings.append(time.perf_counter() - start)
        assert len(update.changes) >= changed
    timings.sort()
    return timings[len(timings) // 2] * 1000


def _best(fn: Callable[[], float], runs: int, *, highest: bool) -> float:
    results = [fn() for _ in range(runs)]
    return max(results) if highest else min(results)


def main() -> None:
    """Run every figure and print them; the last line is the JSON object."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000, help="records per kind per run")
    parser.add_argument("--runs", type=int, default=3, help="best of this many runs")
    args = parser.parse_args()

    figures: dict[str, float] = {}
    for kind in Channel:
        rate = max(records_per_second(kind, args.records) for _ in range(args.runs))
        figures[f"{kind.value}_records_per_s"] = round(rate)
        print(f"apply {kind.value:<12} {rate:>12,.0f} records/s (parse + validate + apply)")
    small = _best(lambda: take_ms(100, 100), args.runs, highest=False)
    large = _best(lambda: take_ms(10_000, 200), args.runs, highest=False)
    figures["take_ms_100_symbols_100_changed"] = round(small, 4)
    figures["take_ms_10k_symbols_200_changed"] = round(large, 4)
    same_changes = _best(lambda: take_ms(100, 100), args.runs, highest=False)
    big_same = _best(lambda: take_ms(10_000, 100), args.runs, highest=False)
    figures["take_ms_10k_symbols_100_changed"] = round(big_same, 4)
    figures["take_cost_ratio_10k_over_100"] = round(big_same / same_changes, 3)
    print(f"take with   100 symbols, 100 changed: {small:.4f} ms (median)")
    print(f"take with 10000 symbols, 200 changed: {large:.4f} ms (median)")
    print(f"take with 10000 symbols, 100 changed: {big_same:.4f} ms (median)")
    print(f"cost ratio 10000/100 symbols at 100 changed: {big_same / same_changes:.3f}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
