"""Fan-out benchmark: N WebSocket clients on ONE web process while ticks flow.

Starts a worker and one web process (uvicorn by default, `--server daphne` to compare) on their
own Redis prefix, connects N clients from a separate load-generator process, and publishes
20 symbols at 200 ticks/s for `--seconds`. Each tick carries its publish time (`sent_ns`), so
sampled clients measure publish-to-client latency of tick values; every client checks that it
received each symbol's final value (delivery). The web process's RSS and CPU are read from /proc.

At each level the same clients and ticks then go to a reference server (`--no-reference` to
skip): a bare asyncio `websockets` server on uvloop, in a process of its own, that reads the same
ticks from Redis, merges them per 250 ms and broadcasts one JSON update frame to every client —
the least a server can do for the same job, so that the product's cost is always read as a
ratio (printed after each level; `ratio_*` keys in the JSON).

Run: `.venv/bin/python bench/fanout.py --clients 100,1000,2000,5000 [--seconds 20]`.
Last line: one JSON object of the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import resource
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from support.processes import (  # noqa: E402
    UNLIMITED_CLIENTS_ENV,
    ManagedProcess,
    free_port,
    isolated_env,
    issue_token,
    run_command,
    wait_until,
)

SYMBOLS = [f"F{i:02d}USDT" for i in range(20)]
SAMPLE_EVERY = 20  # one client in 20 parses every frame for latency; all check delivery
CONNECT_BATCH = 100  # concurrent handshakes: more only queues them in the accept backlog
DELIVERY_TIMEOUT_S = 120.0  # after publishing starts; a client still missing finals by then fails


def raise_fd_limit() -> None:
    """Let this process hold thousands of sockets."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def proc_stat(pid: int) -> tuple[float, int]:
    """(CPU seconds used, RSS KiB) of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    rss_kib = int(fields[21]) * os.sysconf("SC_PAGE_SIZE") // 1024
    return cpu, rss_kib


async def run_clients(url: str, count: int, run_id: str, ready: Any, go: Any, out: Any) -> None:
    """Connect `count` clients, read until every symbol's final value arrived or time is up."""
    from urllib.parse import urlsplit

    from bench.wsload import LeanClient, connect

    parts = urlsplit(url)
    host, port, path = (
        parts.hostname or "127.0.0.1",
        parts.port or 80,
        f"{parts.path}?{parts.query}",
    )
    markers = [f"final-{run_id}-{symbol}".encode() for symbol in SYMBOLS]
    latencies: list[float] = []
    state = {"complete": 0, "frames": 0, "errors": 0}
    all_done = asyncio.Event()

    def handler(index: int) -> Any:
        sample = index % SAMPLE_EVERY == 0
        missing = set(range(len(markers)))

        def on_frame(opcode: int, data: bytes) -> None:
            state["frames"] += 1
            if not missing:
                return
            for i in tuple(missing):
                if markers[i] in data:
                    missing.discard(i)
            if sample:
                now = time.time_ns()
                for path, value in orjson.loads(data).get("changes", {}).items():
                    if path.endswith(".sent_ns"):
                        latencies.append((now - value) / 1e6)
            if not missing:
                state["complete"] += 1
                if state["complete"] + state["errors"] >= count:
                    all_done.set()

        return on_frame

    clients: list[LeanClient] = []

    async def open_one(index: int) -> None:
        try:
            clients.append(await connect(host, port, path, handler(index)))
        except (OSError, TimeoutError):
            state["errors"] += 1

    for start in range(0, count, CONNECT_BATCH):
        await asyncio.gather(
            *(open_one(i) for i in range(start, min(count, start + CONNECT_BATCH)))
        )
    ready.set()
    while not go.is_set():  # noqa: ASYNC110  # a multiprocessing.Event cannot be awaited
        await asyncio.sleep(0.01)
    with contextlib.suppress(TimeoutError):  # clients still missing finals count as failed
        await asyncio.wait_for(all_done.wait(), timeout=DELIVERY_TIMEOUT_S)
    for client in clients:
        client.close()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    out.put({**state, "latencies": latencies, "cpu_s": usage.ru_utime + usage.ru_stime})


def client_process(url: str, count: int, run_id: str, ready: Any, go: Any, out: Any) -> None:
    """The load generator's entry point (a separate process)."""
    import uvloop

    raise_fd_limit()
    sys.path.insert(0, str(ROOT))
    uvloop.run(run_clients(url, count, run_id, ready, go, out))


REFERENCE_CADENCE_S = 0.25  # the web cadence
UVICORN_BACKLOG = 2048  # uvicorn's default --backlog


async def reference_server(port: int, redis_url: str, input_prefix: str) -> None:
    """The reference: merge the ticks per cadence, broadcast one JSON frame to all clients."""
    import redis.asyncio as aioredis
    from websockets.asyncio.server import ServerConnection, broadcast, serve

    clients: set[ServerConnection] = set()
    state: dict[str, dict[str, Any]] = {}
    pending: dict[str, Any] = {}
    seq = 0

    async def handler(ws: ServerConnection) -> None:
        await ws.send(orjson.dumps({"type": "snapshot", "seq": seq, "data": state}).decode())
        clients.add(ws)
        try:
            await ws.wait_closed()
        finally:
            clients.discard(ws)

    async def read() -> None:
        while True:  # resubscribes when Redis drops the connection, as the product's reader does
            client = aioredis.Redis.from_url(redis_url)
            pubsub = client.pubsub()
            try:
                await pubsub.psubscribe(f"{input_prefix}market_data:*")
                async for message in pubsub.listen():
                    if message["type"] != "pmessage":
                        continue
                    record = orjson.loads(message["data"])
                    symbol = record["symbol"]
                    state.setdefault(symbol, {}).update(record)
                    for field, value in record.items():
                        pending[f"market_data.{symbol}.{field}"] = value
            except (aioredis.ConnectionError, OSError) as exc:
                print(f"reference: Redis connection lost ({exc}); resubscribing", file=sys.stderr)
                await asyncio.sleep(0.1)
            finally:
                await client.aclose()

    async def tick() -> None:
        nonlocal seq
        loop = asyncio.get_running_loop()
        due = loop.time()
        while True:
            due += REFERENCE_CADENCE_S
            await asyncio.sleep(max(0.0, due - loop.time()))
            if not pending:
                continue
            seq += 1
            frame = {"type": "update", "seq": seq, "timestamp": time.time(), "changes": pending}
            payload = orjson.dumps(frame).decode()
            pending.clear()
            broadcast(clients, payload)

    # The listen backlog of uvicorn's default (asyncio's is 100): a storm of connections
    # otherwise overflows the accept queue, and every dropped SYN waits 1 s, 3 s, 7 s ...
    async with serve(
        handler, "127.0.0.1", port, compression=None, ping_interval=30, backlog=UVICORN_BACKLOG
    ):
        await asyncio.gather(read(), tick())


def reference_process(port: int, redis_url: str, input_prefix: str) -> None:
    """The reference server's entry point (a separate process)."""
    import uvloop

    raise_fd_limit()
    uvloop.run(reference_server(port, redis_url, input_prefix))


def publish(url: str, prefix: str, seconds: float, rate: int, run_id: str) -> int:
    """Publish `rate` ticks/s over the 20 symbols, then one final tick per symbol."""
    client = redis.Redis.from_url(url)
    sent = 0
    start = time.perf_counter()
    price = 100.0
    while (elapsed := time.perf_counter() - start) < seconds:
        due = int(rate * elapsed) - sent
        if due <= 0:
            time.sleep(0.002)
            continue
        pipe = client.pipeline(transaction=False)
        for _ in range(due):
            symbol = SYMBOLS[sent % len(SYMBOLS)]
            price += 0.01
            record = {"symbol": symbol, "last_price": round(price, 2), "sent_ns": time.time_ns()}
            pipe.publish(f"{prefix}market_data:{symbol}", orjson.dumps(record))
            sent += 1
        pipe.execute()
    pipe = client.pipeline(transaction=False)
    for symbol in SYMBOLS:
        record = {
            "symbol": symbol,
            "last_price": -1.0,
            "mark": f"final-{run_id}-{symbol}",
            "sent_ns": time.time_ns(),
        }
        pipe.publish(f"{prefix}market_data:{symbol}", orjson.dumps(record))
    pipe.execute()
    client.close()
    return sent


def run_level(
    args: argparse.Namespace, clients: int, idle_rss_kib: int, *, reference: bool = False
) -> dict[str, Any]:
    """One run at `clients` connections (on the reference server if `reference`); its figures."""
    url = os.environ.get("DASHBOARD_REDIS_URL", "redis://127.0.0.1:6379/0")
    prefix = f"fanout-{uuid.uuid4().hex[:8]}"
    run_id = uuid.uuid4().hex[:6]
    port = free_port()
    env = isolated_env(
        prefix=prefix,
        redis_url=url,
        DASHBOARD_LOG_LEVEL="WARNING",
        DASHBOARD_PORT=str(port),
        DASHBOARD_WEB_SERVER=args.server,
        DASHBOARD_CHANNEL_LAYER_BACKEND=args.layer,
        **database_env(),
        **UNLIMITED_CLIENTS_ENV,
    )
    logs = Path("/tmp") / prefix
    logs.mkdir()
    ctx = multiprocessing.get_context("spawn")
    client = redis.Redis.from_url(url)
    servers: list[ManagedProcess] = []
    ref: Any = None
    try:
        if reference:
            ref = ctx.Process(target=reference_process, args=(port, url, f"{prefix}:"))
            ref.start()
            web_pid = ref.pid
            wait_until(lambda: _port_open(port), timeout=60, what="reference server")
            idle_rss_kib = proc_stat(web_pid)[1]
            ws_url = f"ws://127.0.0.1:{port}/ws"
        else:
            worker = ManagedProcess(["run_aggregator"], env=env, log_path=logs / "worker.log")
            servers.append(worker)
            web = ManagedProcess(["serve"], env=env, log_path=logs / "web.log")
            servers.append(web)
            web_pid = web.pid
            wait_until(lambda: client.get(f"{prefix}:worker:leader"), timeout=60, what="worker")
            wait_until(lambda: _port_open(port), timeout=60, what="web")
            ws_url = f"ws://127.0.0.1:{port}/ws?type=web&format=json&token={args.token}"
        ready, go, out = ctx.Event(), ctx.Event(), ctx.Queue()
        loader = ctx.Process(target=client_process, args=(ws_url, clients, run_id, ready, go, out))
        connect_started = time.perf_counter()
        loader.start()
        if not ready.wait(timeout=600):
            raise RuntimeError("clients did not connect")
        connect_s = time.perf_counter() - connect_started
        loader_cpu0 = _cpu_of(loader.pid)
        cpu0, _ = proc_stat(web_pid)
        go.set()
        started = time.perf_counter()
        sent = publish(url, f"{prefix}:", args.seconds, args.rate, run_id)
        result = out.get(timeout=300)
        elapsed = time.perf_counter() - started
        cpu1, rss1 = proc_stat(web_pid)
        loader.join(timeout=60)
    finally:
        for server in reversed(servers):
            server.terminate()
        if ref is not None:
            ref.terminate()
            ref.join(timeout=15)
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()
    latencies = sorted(result["latencies"])
    p50 = statistics.median(latencies) if latencies else float("nan")
    p99 = latencies[int(len(latencies) * 0.99) - 1] if latencies else float("nan")
    delivery = 100.0 * result["complete"] / clients
    cpu_pct = 100.0 * (cpu1 - cpu0) / elapsed
    messages = result["frames"]
    loader_cpu_pct = 100.0 * (result["cpu_s"] - loader_cpu0) / elapsed
    cpu_us_per_message = 1e6 * (cpu1 - cpu0) / max(messages, 1)
    return {
        "clients": clients,
        "server": "reference" if reference else args.server,
        "ticks_sent": sent,
        "connect_s": round(connect_s, 1),
        "delivery_pct": round(delivery, 2),
        "errors": result["errors"],
        "latency_p50_ms": round(p50, 1),
        "latency_p99_ms": round(p99, 1),
        "web_rss_mib": round(rss1 / 1024, 1),
        "rss_kib_per_client": round((rss1 - idle_rss_kib) / clients, 1),
        "web_cpu_pct": round(cpu_pct, 1),
        "cpu_us_per_client_message": round(cpu_us_per_message, 1),
        "messages": messages,
        "load_generator_cpu_pct": round(loader_cpu_pct, 1),
    }


def database_env() -> dict[str, str]:
    """The caller's DASHBOARD_DATABASE_URL, passed on to the processes started (if set)."""
    url = os.environ.get("DASHBOARD_DATABASE_URL")
    return {"DASHBOARD_DATABASE_URL": url} if url else {}


def _cpu_of(pid: int | None) -> float:
    return proc_stat(pid)[0] if pid else 0.0


def _port_open(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def main() -> None:
    """Run every level and print the table; the last line is the JSON object."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", default="100,1000,2000,5000")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rate", type=int, default=200, help="ticks per second")
    parser.add_argument("--server", choices=("uvicorn", "daphne"), default="uvicorn")
    parser.add_argument("--layer", choices=("pubsub", "core"), default="pubsub")
    parser.add_argument(
        "--no-reference", action="store_true", help="skip the bare websockets reference server"
    )
    args = parser.parse_args()
    raise_fd_limit()
    # The clients authenticate like any other (a token in the configured database).
    env = {"DASHBOARD_SECRET_KEY": "bench", **database_env()}
    run_command(["migrate", "--no-input"], env=env, timeout=300)
    args.token = issue_token(f"fanout-{uuid.uuid4().hex[:8]}", env=env)
    idle_rss_kib = _measure_idle_rss(args)
    load = os.getloadavg()
    print(
        f"server={args.server} layer={args.layer} rate={args.rate}/s seconds={args.seconds} "
        f"idle web RSS {idle_rss_kib / 1024:.1f} MiB; cores={os.cpu_count()} "
        f"load average before {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    header = (
        "clients",
        "server",
        "delivery_pct",
        "latency_p50_ms",
        "latency_p99_ms",
        "web_cpu_pct",
        "cpu_us_per_client_message",
        "web_rss_mib",
        "rss_kib_per_client",
        "errors",
        "load_generator_cpu_pct",
    )
    print(" ".join(f"{h:>14}" for h in header))
    figures: dict[str, Any] = {}
    for clients in (int(c) for c in args.clients.split(",")):
        row = run_level(args, clients, idle_rss_kib)
        print(" ".join(f"{row[h]:>14}" for h in header))
        for key, value in row.items():
            if key not in ("clients", "server"):
                figures[f"{key}_at_{clients}"] = value
        if args.no_reference:
            continue
        ref = run_level(args, clients, 0, reference=True)
        print(" ".join(f"{ref[h]:>14}" for h in header))
        for key, value in ref.items():
            if key not in ("clients", "server"):
                figures[f"reference_{key}_at_{clients}"] = value
        ratios = {key: _ratio(row[key], ref[key]) for key in RATIOS}
        print(f"{'':>14} {'ratio':>14} " + " ".join(f"{k}={v}" for k, v in ratios.items()))
        for key, ratio in ratios.items():
            figures[f"ratio_{key}_at_{clients}"] = ratio
    figures["load_average_after"] = round(os.getloadavg()[0], 2)
    print(json.dumps(figures))


# Product over reference, for the figures where lower is better.
RATIOS = ("latency_p99_ms", "cpu_us_per_client_message", "rss_kib_per_client")


def _ratio(product: float, reference: float) -> float | None:
    if not reference or reference != reference:  # zero or NaN
        return None
    return round(product / reference, 2)


def _measure_idle_rss(args: argparse.Namespace) -> int:
    """Start a web process with no clients and read its RSS once it has served one request."""
    port = free_port()
    prefix = f"fanout-idle-{uuid.uuid4().hex[:6]}"
    env = {
        "DASHBOARD_SECRET_KEY": "bench",
        **database_env(),
        "DASHBOARD_PORT": str(port),
        "DASHBOARD_REDIS_KEY_PREFIX": prefix,
        "DASHBOARD_LOG_LEVEL": "WARNING",
        "DASHBOARD_WEB_SERVER": args.server,
        "DASHBOARD_CHANNEL_LAYER_BACKEND": args.layer,
    }
    web = ManagedProcess(["serve"], env=env, log_path=Path(f"/tmp/{prefix}.log"))
    try:
        wait_until(lambda: _port_open(port), timeout=60, what="web")
        import websockets.sync.client

        with websockets.sync.client.connect(f"ws://127.0.0.1:{port}/ws?token={args.token}") as ws:
            ws.recv(timeout=10)
        time.sleep(0.5)  # let the hub settle after its first client (a measurement, not a wait)
        return proc_stat(web.pid)[1]
    finally:
        web.terminate()


if __name__ == "__main__":
    main()
