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

`--refresh-flood` runs the refresh flood instead (a worker and a web process, no desk): a state
of 20 symbols with 1 KiB extra fields; 200 sockets that never read, each subscribed to a narrowed
view and sending `refresh` 8 times a second (under the general message rate, so that they are
not closed); meanwhile a polite client times ticks to the updates that carry them. Prints the web
process's RSS growth and the polite client's latency p50/p99; tests/e2e/test_websocket_bounds.py
runs the same flood (`refresh_flood`) as a correctness check.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import os
import secrets
import socket
import statistics
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import websockets
from websockets.exceptions import ConnectionClosed

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.fanout import raise_fd_limit  # noqa: E402
from support.processes import (  # noqa: E402
    UNLIMITED_CLIENTS_ENV,
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


def rss_kib(pid: int) -> int:
    """A process's resident set size, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def send_queue_bytes(pid: int) -> int:
    """Bytes the kernel holds unsent in a process's TCP sockets (Send-Q, /proc/net/tcp)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    total = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[9] in inodes:
                    total += int(fields[4].split(":")[0], 16)
    return total


_REFRESH_FRAME = bytes([0x81, 0x80 | 18, 0, 0, 0, 0]) + b'{"type":"refresh"}'  # zero mask


async def refresher(url: str, headers: dict[str, str], per_s: float, stop: asyncio.Event) -> str:
    """A socket that never reads, sending `refresh` `per_s` times a second; how it ended.

    Raw frames on a plain stream: a WebSocket library would go on reading in the background.
    The stream stops reading once 64 KiB are buffered, the kernel's receive buffer is 4 KiB.
    """
    host, port = url.split("/")[2].split(":")
    path = "/" + url.split("/", 3)[3]
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
    reader, writer = await asyncio.open_connection(sock=sock)
    try:
        extra = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            f"Sec-WebSocket-Version: 13\r\n{extra}\r\n".encode()
        )
        status = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        if not status.startswith(b"HTTP/1.1 101"):
            return f"refused {status[:12].decode(errors='replace')}"
        while not stop.is_set():  # from here on it never reads again
            writer.write(_REFRESH_FRAME)
            await writer.drain()
            await asyncio.sleep(1 / per_s)
        return "held"
    except (OSError, TimeoutError) as exc:
        return f"ended {type(exc).__name__}"
    finally:
        writer.close()


async def refresh_flood(
    *,
    flood_url: str,
    polite_url: str,
    publish_tick: Callable[[float], None],
    web_pid: int,
    sockets: int = 200,
    per_s: float = 8.0,
    seconds: float = 15.0,
    headers: Callable[[int], dict[str, str]] = lambda n: {},
    abort_growth_mib: float | None = None,
) -> dict[str, Any]:
    """`sockets` non-reading refreshers while a polite client times its updates.

    The polite client (narrowed to the symbol `publish_tick` moves) publishes a tick, waits for
    the update carrying it (5 s at most: then it counts as missed) and starts again. Stops early
    if what the web process holds grows by more than `abort_growth_mib` (a test's bound, so
    that a defect shows without eating the machine's memory). What the process holds for its
    clients is its RSS growth plus the unsent bytes the kernel buffers for its sockets (a
    client that does not read fills those first: up to `tcp_wmem`'s 4 MiB each, outside RSS).
    """
    rss_before = rss_kib(web_pid)
    rss_peak = rss_before
    held_peak = 0  # RSS growth plus what the kernel buffers for the process's sockets, in KiB
    latencies: list[float] = []
    missed = 0
    stop = asyncio.Event()
    async with websockets.connect(polite_url, max_queue=None) as polite:
        await polite.recv()  # its snapshot
        flooders = [
            asyncio.create_task(refresher(flood_url, headers(n), per_s, stop))
            for n in range(sockets)
        ]
        loop = asyncio.get_running_loop()
        started = loop.time()
        price = 0.0
        try:
            while loop.time() - started < seconds:
                price += 1.0
                sent = loop.time()
                publish_tick(price)
                if await _update_carrying(polite, price, within=5.0):
                    latencies.append(loop.time() - sent)
                else:
                    missed += 1
                rss = rss_kib(web_pid)
                rss_peak = max(rss_peak, rss)
                held_peak = max(held_peak, rss - rss_before + send_queue_bytes(web_pid) // 1024)
                if abort_growth_mib and held_peak / 1024 > abort_growth_mib:
                    break
                await asyncio.sleep(0.1)
        finally:
            stop.set()
            ended = await asyncio.gather(*flooders, return_exceptions=True)
    ordered = sorted(latencies) or [float("nan")]
    return {
        "sockets": sockets,
        "refreshes_per_s_per_socket": per_s,
        "seconds": round(loop.time() - started, 1),
        "flooders": dict(Counter(str(e) for e in ended)),
        "rss_before_mib": round(rss_before / 1024, 1),
        "rss_growth_mib": round((rss_peak - rss_before) / 1024, 1),
        "held_growth_mib": round(held_peak / 1024, 1),  # RSS growth + kernel send queues
        "polite_updates": len(latencies),
        "polite_missed": missed,
        "polite_latency_p50_ms": round(statistics.median(ordered) * 1000, 1),
        "polite_latency_p99_ms": round(
            ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 1
        ),
    }


async def _update_carrying(ws: Any, price: float, *, within: float) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while (left := deadline - loop.time()) > 0:
        try:
            frame = json.loads(await asyncio.wait_for(ws.recv(), left))
        except TimeoutError:
            return False
        if frame["type"] == "update" and any(
            value == price or (isinstance(value, dict) and value.get("last_price") == price)
            for value in frame["changes"].values()
        ):
            return True
    return False


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


@dataclass
class Deployment:
    """A bench's own deployment: key prefix, web port, API tokens and processes."""

    prefix: str
    port: int
    redis_url: str
    tokens: list[str]
    processes: list[ManagedProcess]


@contextlib.contextmanager
def deployment(commands: tuple[str, ...], tokens: int, **extra_env: str) -> Iterator[Deployment]:
    """A scratch database, `tokens` API tokens and `commands` running; all gone afterwards."""
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
            **extra_env,
        )
        logs = Path("/tmp") / prefix
        logs.mkdir()
        processes: list[ManagedProcess] = []
        try:
            run_command(["migrate", "--no-input"], env=env, timeout=300)
            issued = [issue_token(f"{prefix}-bench-{n}", env=env) for n in range(tokens)]
            for command in commands:
                processes.append(ManagedProcess([command], env=env, log_path=logs / command))
            wait_until(lambda: _answers(port), timeout=60, what="the web process")
            yield Deployment(prefix, port, url, issued, processes)
        finally:
            for process in processes:
                process.terminate()


def main() -> None:
    """Start the stack, run the floods, print the figures; the last line is JSON."""
    raise_fd_limit()
    if "--refresh-flood" in sys.argv[1:]:
        main_refresh_flood()
        return
    # the polite client's token, and six for the floods (per-token limits are per token)
    with deployment(("run_aggregator", "serve", "simulate"), tokens=7) as stack:
        results = asyncio.run(run(stack.port, stack.tokens))
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


def main_refresh_flood() -> None:
    """A worker and a web process, no desk; the refresh flood of `refresh_flood`."""
    import redis

    # 200 sockets on one token from one address: the connection limits are not what is measured
    with deployment(("run_aggregator", "serve"), tokens=1, **UNLIMITED_CLIENTS_ENV) as stack:
        client = redis.Redis.from_url(stack.redis_url)

        def publish(symbol: str, record: dict[str, Any]) -> None:
            client.publish(f"{stack.prefix}:market_data:{symbol}", json.dumps(record))

        try:
            time.sleep(2)  # the worker's start-up (cache keys) before the first records
            for n in range(20):  # ~25 KiB of market data: what each refresh snapshot weighs
                publish(
                    f"FL{n:02d}", {"symbol": f"FL{n:02d}", "last_price": 1.0, "pad": "p" * 1024}
                )
            publish("LATUSDT", {"symbol": "LATUSDT", "last_price": 0.5})
            time.sleep(1)
            base = f"ws://127.0.0.1:{stack.port}/ws?token={stack.tokens[0]}"
            figures = asyncio.run(
                refresh_flood(
                    flood_url=f"{base}&channels=market_data",
                    polite_url=f"{base}&type=tui&channels=market_data:LATUSDT",
                    publish_tick=lambda price: publish(
                        "LATUSDT", {"symbol": "LATUSDT", "last_price": price}
                    ),
                    web_pid=stack.processes[1].pid,
                    seconds=float(os.environ.get("BENCH_SECONDS", "30")),
                )
            )
        finally:
            client.close()
    for key, value in figures.items():
        print(f"{key:>30}: {value}")
    print(json.dumps(figures))


def _answers(port: int) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


if __name__ == "__main__":
    main()
