"""Abuse limits under a flood: what each limit does, and what a polite client sees meanwhile.

Starts a worker, a web process (default limits) and the demo desk on their own Redis prefix and
database, then runs four floods, each from its own client address (X-Forwarded-For from
loopback, the trusted proxy), while a polite client on another address pings every 200 ms and
receives the desk's updates:

1. messages: 40 sockets (each its own address) send 5,000 pings each as fast as they can;
2. connect: 400 connection attempts from one address, 50 at a time;
3. failed auth: 300 attempts with random wrong tokens from one address;
4. connections: 260 sockets opened from one address at 18 a second (under the connect rate)
   and held.

Prints, per flood, what the flooder got and the polite client's ping round trip (p50/p99/max)
and longest gap between updates; the last line is one JSON object of the figures.
Run: `.venv/bin/python bench/limits.py` (about a minute).
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import secrets
import statistics
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import websockets
from websockets.exceptions import ConnectionClosed

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.fanout import raise_fd_limit  # noqa: E402
from tests.processes import (  # noqa: E402
    ManagedProcess,
    free_port,
    isolated_env,
    issue_token,
    run_command,
    scratch_database,
    wait_until,
)

_address = iter(f"198.18.{n // 250}.{n % 250 + 1}" for n in range(60_000))


async def attempt(url: str, address: str) -> int | None:
    """One connection: None if admitted (a snapshot came), else the close code."""
    try:
        async with websockets.connect(
            url, additional_headers={"X-Forwarded-For": address}, open_timeout=10
        ) as ws:
            try:
                await asyncio.wait_for(ws.recv(), 10)
            except ConnectionClosed:
                return ws.close_code
            return None
    except (OSError, websockets.InvalidStatus):
        return -1


class Polite:
    """A well-behaved client: a ping every 200 ms, and the desk's updates."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.rtts: list[float] = []
        self.update_gaps: list[float] = []
        self._pinged = 0.0
        self._last_update = 0.0
        self._pong = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        """Hold the connection until `stop` is set."""
        async with websockets.connect(
            self.url, additional_headers={"X-Forwarded-For": next(_address)}
        ) as ws:
            await ws.recv()
            self._last_update = time.monotonic()
            reader = asyncio.create_task(self._read(ws))
            while not stop.is_set():
                self._pong.clear()
                self._pinged = time.monotonic()
                await ws.send('{"type":"ping"}')
                await asyncio.wait_for(self._pong.wait(), 10)
                await asyncio.sleep(0.2)  # the client's pace: 5 messages/s, under the limit
            reader.cancel()

    async def _read(self, ws: Any) -> None:
        async for raw in ws:
            frame = json.loads(raw)
            now = time.monotonic()
            if frame["type"] == "pong":
                self.rtts.append(now - self._pinged)
                self._pong.set()
            elif frame["type"] == "update":
                self.update_gaps.append(now - self._last_update)
                self._last_update = now

    def figures(self) -> dict[str, float]:
        """Round trips and update gaps since the last call, in ms; then forget them."""
        if not self.rtts:
            return {"pings": 0}
        rtts = sorted(self.rtts)
        out = {
            "pings": len(rtts),
            "ping_p50_ms": round(statistics.median(rtts) * 1000, 2),
            "ping_p99_ms": round(rtts[min(len(rtts) - 1, int(len(rtts) * 0.99))] * 1000, 2),
            "ping_max_ms": round(rtts[-1] * 1000, 2),
            "update_gap_max_ms": round(max(self.update_gaps or [0.0]) * 1000, 1),
        }
        self.rtts, self.update_gaps = [], []
        return out


async def flood_messages(url: str, sockets: int) -> dict[str, Any]:
    """`sockets` sockets at once, each sending pings as fast as it can; totals and extremes."""
    results = await asyncio.gather(*(flood_one_socket(url) for _ in range(sockets)))
    return {
        "sockets": sockets,
        "closed_4429": sum(r["close_code"] == 4429 for r in results),
        "pongs_per_socket_max": max(r["pongs"] for r in results),
        "rate_limited_errors_per_socket_max": max(r["rate_limited_errors"] for r in results),
        "closed_after_ms_max": max(r["closed_after_ms"] for r in results),
    }


async def flood_one_socket(url: str) -> dict[str, Any]:
    """One socket sending pings as fast as it can until the server closes it."""
    kinds: Counter[str] = Counter()
    started = time.monotonic()
    async with websockets.connect(
        url, additional_headers={"X-Forwarded-For": next(_address)}, max_queue=None
    ) as ws:
        await ws.recv()
        sent = 0
        try:
            for _ in range(5000):
                await ws.send('{"type":"ping"}')
                sent += 1
            async for raw in ws:
                frame = json.loads(raw)
                kinds[frame.get("code", frame["type"])] += 1
        except ConnectionClosed:
            pass
        return {
            "sent_before_close": sent,
            "pongs": kinds["pong"],
            "rate_limited_errors": kinds["rate_limited"],
            "close_code": ws.close_code,
            "closed_after_ms": round((time.monotonic() - started) * 1000, 1),
        }


async def flood_connects(url: str, attempts: int, batch: int) -> dict[str, Any]:
    """`attempts` connections from one address, `batch` at a time; tally the outcomes."""
    address = next(_address)
    outcomes: Counter[str] = Counter()
    started = time.monotonic()
    for first in range(0, attempts, batch):
        count = min(batch, attempts - first)
        results = await asyncio.gather(*(attempt(url, address) for _ in range(count)))
        outcomes.update("admitted" if r is None else str(r) for r in results)
    return {
        "attempts": attempts,
        **dict(outcomes),
        "seconds": round(time.monotonic() - started, 2),
    }


async def flood_bad_tokens(base: str, attempts: int) -> dict[str, Any]:
    """Random wrong tokens from one address, one after another."""
    address = next(_address)
    outcomes: list[int | None] = []
    for _ in range(attempts):
        outcomes.append(await attempt(f"{base}&token=dsk_{secrets.token_urlsafe(32)}", address))
    return {
        "attempts": attempts,
        "refused_4401": outcomes.count(4401),
        "refused_4429": outcomes.count(4429),
        "first_4429_at": outcomes.index(4429) + 1 if 4429 in outcomes else None,
    }


async def hold_connections(urls: list[str], count: int, per_s: float) -> dict[str, Any]:
    """Open `count` sockets from one address, `per_s` a second, and keep them; tally them.

    The sockets take turns over `urls` (one token each), so that the per-token limit is not
    what stops them first.
    """
    address = next(_address)
    opened: list[Any] = []
    refused: Counter[int] = Counter()
    for index in range(count):
        await asyncio.sleep(1 / per_s)  # the pace of the attempts, under the connect rate
        ws = await websockets.connect(
            urls[index % len(urls)], additional_headers={"X-Forwarded-For": address}
        )
        try:
            await asyncio.wait_for(ws.recv(), 10)
            opened.append(ws)
        except ConnectionClosed:
            refused[ws.close_code or 0] += 1
    for ws in opened:
        await ws.close()
    return {"attempts": count, "admitted": len(opened), **{str(k): v for k, v in refused.items()}}


def polite_process(url: str, pipe: Any) -> None:
    """The polite client in a process of its own, so that the floods' client-side work does
    not delay its measurements; answers each request on `pipe` with its figures so far."""
    import uvloop

    async def serve() -> None:
        polite = Polite(url)
        stop = asyncio.Event()
        watcher = asyncio.create_task(polite.run(stop))
        loop = asyncio.get_running_loop()
        while True:
            request = await loop.run_in_executor(None, pipe.recv)
            if request == "stop":
                stop.set()
                await watcher
                pipe.send(polite.figures())
                return
            pipe.send(polite.figures())

    uvloop.run(serve())


async def run(port: int, tokens: list[str]) -> dict[str, Any]:
    """Every flood with the polite client watching."""
    base = f"ws://127.0.0.1:{port}/ws?type=web&format=json"
    urls = [f"{base}&token={token}" for token in tokens]
    ours, theirs = multiprocessing.get_context("spawn").Pipe()
    watcher = multiprocessing.get_context("spawn").Process(
        target=polite_process, args=(urls[0], theirs)
    )
    watcher.start()

    def polite_figures(final: bool = False) -> dict[str, Any]:
        ours.send("stop" if final else "figures")
        figures: dict[str, Any] = ours.recv()
        return figures

    await asyncio.sleep(3)  # a baseline period for the polite client (a measurement window)
    results: dict[str, Any] = {"baseline": polite_figures()}
    floods: dict[str, Callable[[], Awaitable[dict[str, Any]]]] = {
        "messages": lambda: flood_messages(urls[1], 40),
        "connect_rate": lambda: flood_connects(urls[1], 400, 50),
        "failed_auth": lambda: flood_bad_tokens(base, 300),
        "connections_per_ip": lambda: hold_connections(urls[1:], 260, 18),
    }
    for name, flood in floods.items():
        print(f"flood: {name} ...", file=sys.stderr, flush=True)
        results[name] = {"flooder": await flood(), "polite": polite_figures()}
    polite_figures(final=True)
    watcher.join(timeout=30)
    return results


def main() -> None:
    """Start the stack, run the floods, print the figures; the last line is JSON."""
    raise_fd_limit()
    url = os.environ.get("DASHBOARD_REDIS_URL", "redis://127.0.0.1:6379/0")
    server = os.environ.get("DASHBOARD_BENCH_PG", "postgres://postgres@127.0.0.1:5432")
    prefix = f"limits-{uuid.uuid4().hex[:8]}"
    port = free_port()
    with scratch_database(server, prefix.replace("-", "_")) as database_url:
        env = isolated_env(
            prefix=prefix,
            redis_url=url,
            DASHBOARD_DATABASE_URL=database_url,
            DASHBOARD_LOG_LEVEL=os.environ.get("DASHBOARD_LOG_LEVEL", "WARNING"),
            DASHBOARD_PORT=str(port),
        )
        logs = Path("/tmp") / prefix
        logs.mkdir()
        processes: list[ManagedProcess] = []
        try:
            run_command(["migrate", "--no-input"], env=env, timeout=300)
            # the polite client's token, and six for the floods (per-token limits are per token)
            tokens = [issue_token(f"{prefix}-bench-{n}", env=env) for n in range(7)]
            for command in ("run_aggregator", "serve", "simulate"):
                processes.append(ManagedProcess([command], env=env, log_path=logs / command))
            wait_until(lambda: _answers(port), timeout=60, what="the web process")
            results = asyncio.run(run(port, tokens))
        finally:
            for process in processes:
                process.terminate()
    for name, figures in results.items():
        print(f"{name:>20}: {figures}")
    flat = {
        f"{name}_{part}_{key}": value
        for name, figures in results.items()
        if name != "baseline"
        for part, values in figures.items()
        for key, value in values.items()
    }
    flat.update({f"baseline_{k}": v for k, v in results["baseline"].items()})
    print(json.dumps(flat))


def _answers(port: int) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


if __name__ == "__main__":
    main()
