"""Reconnect storm: N clients on web process A, A gets SIGTERM, all reconnect to web process B.

Starts a worker and two web processes (A and B, uvicorn unless `--server daphne`) on their own
Redis prefix (with `--server reference`, two bare asyncio `websockets` servers instead: the
reference server of bench/fanout.py, which sends a snapshot on connect and one merged frame per
250 ms, and knows no resume; a SIGTERM kills it, so the kernel closes its sockets at once),
publishes 20 symbols at `--rate` ticks/s throughout, connects `--clients`
`type=web&format=json` clients to A from a separate load-generator process, then sends A SIGTERM.
Every client reconnects to B the moment A closes it — at full speed, no backoff (the
`reconnect_after_ms` of a `shutdown` frame is not waited for) — and is *current* once B's first
frame for it arrived: a snapshot, or with `--resume` the `recovered` frame (contract section
4.1: the client sends `since=<its last seq>&epoch=<its epoch>`; the server answers
`{"type":"recovered",...}` and the missed updates, or a snapshot with `"recovered": false`).

Prints the time from the SIGTERM until every client was current (and p50/p99), B's CPU seconds
over the storm (from /proc), the bytes B wrote (its `wchar` in /proc/PID/io) and the payload bytes
the clients received from B until current, and with `--resume` how many were recovered.
Last line: one JSON object of the figures.

Run: `.venv/bin/python bench/reconnect.py [--clients 5000] [--resume] [--server daphne]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import re
import signal
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import orjson
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.admission import percentile  # noqa: E402
from bench.fanout import (  # noqa: E402
    SYMBOLS,
    _port_open,
    database_env,
    proc_stat,
    raise_fd_limit,
    reference_process,
)
from support.processes import (  # noqa: E402
    UNLIMITED_CLIENTS_ENV,
    ManagedProcess,
    free_port,
    isolated_env,
    issue_token,
    run_command,
    wait_until,
)

CONNECT_CONCURRENCY = 200  # the first, gentle connection of every client to A
STORM_CONCURRENCY = 2000  # reconnections in flight at once (uvicorn's listen backlog is 2048)
STORM_TIMEOUT_S = 120.0
_SEQ = re.compile(rb'"seq":(\d+)')
_EPOCH = re.compile(rb'"epoch":"([^"]*)"')
_REASON = re.compile(rb'"reason":"([^"]*)"')


def wchar(pid: int) -> int:
    """Bytes a process has written (sockets included), from /proc/PID/io."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    return 0


def listen_overflows() -> int:
    """The machine's count of connections dropped because an accept queue was full (a SYN
    or handshake ACK dropped: the client retransmits after 1 s, 3 s, 7 s ...)."""
    lines = Path("/proc/net/netstat").read_text().splitlines()
    for names, values in zip(lines[::2], lines[1::2], strict=True):
        if names.startswith("TcpExt:"):
            return int(dict(zip(names.split(), values.split(), strict=True))["ListenOverflows"])
    return 0


async def storm(args: dict[str, Any], ready: Any, killed_at: Any, out: Any) -> None:
    """Connect every client to A; once A drops them, reconnect each to B; report."""
    from bench.wsload import LeanClient, connect

    count, port_a, port_b = args["clients"], args["port_a"], args["port_b"]
    base = f"/ws?type=web&format=json&token={args['token']}"
    seqs: list[int] = [0] * count
    epochs: list[str | None] = [None] * count
    current_at: list[float | None] = [None] * count
    dropped_at: list[float | None] = [None] * count  # A closed it
    opened_at: list[float | None] = [None] * count  # B answered its handshake
    answers: dict[str, int] = {"recovered": 0, "snapshot": 0, "snapshot_not_recovered": 0}
    received_from_b = [0]
    spans: list[int] = []  # seq - since of each recovered frame
    replayed = [0]  # frames after a recovered frame until current
    errors: list[str] = []
    all_current = asyncio.Event()
    done = [0]

    def on_a(index: int) -> Any:
        def on_frame(_opcode: int, data: bytes) -> None:
            if (seq := _SEQ.search(data)) is not None:
                seqs[index] = int(seq.group(1))
            if epochs[index] is None and (epoch := _EPOCH.search(data)) is not None:
                epochs[index] = epoch.group(1).decode()

        return on_frame

    def on_b(index: int) -> Any:
        # With resume, a client is current once it holds the `recovered` frame's seq: the
        # frame itself when nothing was missed, else the last replayed update.
        replay_to: list[int | None] = [None]

        def on_frame(_opcode: int, data: bytes) -> None:
            if current_at[index] is not None:
                return
            received_from_b[0] += len(data)
            head = data[:200]
            if replay_to[0] is not None:
                replayed[0] += 1
                seq = _SEQ.search(head) if b'"type":"update"' in head else None
                if seq is None or int(seq.group(1)) < replay_to[0]:
                    return  # a status frame, or an update before the recovered seq
            elif b'"type":"recovered"' in head:
                answers["recovered"] += 1
                recovered = orjson.loads(data)
                spans.append(recovered["seq"] - recovered["since"])
                if recovered["seq"] > recovered["since"]:
                    replay_to[0] = recovered["seq"]
                    return
            elif b'"type":"snapshot"' in head:
                answers["snapshot"] += 1
                if b'"recovered":false' in data:
                    answers["snapshot_not_recovered"] += 1
                    reason = _REASON.search(head)
                    key = f"reason_{reason.group(1).decode() if reason else '?'}"
                    answers[key] = answers.get(key, 0) + 1
            else:
                return  # a status frame, say: not yet current
            current_at[index] = time.time()
            done[0] += 1
            if done[0] + len(errors) >= count:
                all_current.set()

        return on_frame

    slots = asyncio.Semaphore(CONNECT_CONCURRENCY)
    storm_slots = asyncio.Semaphore(STORM_CONCURRENCY)
    on_b_clients: list[LeanClient] = []

    async def reconnect(index: int) -> None:
        path = base
        if args["resume"] and epochs[index] is not None:
            path += f"&since={seqs[index]}&epoch={epochs[index]}"
        async with storm_slots:
            try:
                on_b_clients.append(await connect("127.0.0.1", port_b, path, on_b(index)))
                opened_at[index] = time.time()
            except (OSError, TimeoutError, ConnectionError) as exc:
                errors.append(f"{type(exc).__name__}: {str(exc)[:60]}")
                if done[0] + len(errors) >= count:
                    all_current.set()

    async def open_on_a(index: int) -> LeanClient:
        async with slots:
            return await connect("127.0.0.1", port_a, base, on_a(index))

    loop = asyncio.get_running_loop()
    pending: set[asyncio.Task[None]] = set()

    def when_dropped(index: int) -> Any:
        def callback(_closed: asyncio.Future[int]) -> None:
            dropped_at[index] = time.time()
            task = loop.create_task(reconnect(index))
            pending.add(task)
            task.add_done_callback(pending.discard)

        return callback

    clients = await asyncio.gather(*(open_on_a(i) for i in range(count)))
    for index, client in enumerate(clients):
        client.closed.add_done_callback(when_dropped(index))
    ready.set()
    try:
        await asyncio.wait_for(all_current.wait(), timeout=STORM_TIMEOUT_S)
    except TimeoutError:
        errors.append(f"{count - done[0] - len(errors)} not current in {STORM_TIMEOUT_S} s")
    sigterm = killed_at.value
    times = [t - sigterm for t in current_at if t is not None]
    drops = [t - sigterm for t in dropped_at if t is not None]
    # Where the time went, per client: A's close after the SIGTERM, B's handshake after the
    # drop (queueing in the load generator and B's accept and admission), the first frame after.
    handshakes = [o - d for o, d in zip(opened_at, dropped_at, strict=True) if o and d]
    firsts = [c - o for c, o in zip(current_at, opened_at, strict=True) if c and o]
    out.put(
        {
            "current": len(times),
            "all_current_s": max(times) if len(times) == count else None,
            "current_p50_s": percentile(times, 0.5),
            "current_p99_s": percentile(times, 0.99),
            "first_current_s": min(times) if times else None,
            "dropped_p50_s": percentile(drops, 0.5),
            "last_dropped_s": max(drops) if drops else None,
            "handshake_p50_s": percentile(handshakes, 0.5),
            "handshake_p99_s": percentile(handshakes, 0.99),
            "first_frame_p50_s": percentile(firsts, 0.5),
            "first_frame_p99_s": percentile(firsts, 0.99),
            "answers": answers,
            "received_from_b_bytes": received_from_b[0],
            "recovered_span_p50": percentile([float(x) for x in spans], 0.5),
            "recovered_span_max": max(spans) if spans else None,
            "frames_after_recovered": replayed[0],
            "errors": errors[:5],
            "error_count": len(errors),
        }
    )
    for client in on_b_clients:
        client.close()


def client_process(args: dict[str, Any], ready: Any, killed_at: Any, out: Any) -> None:
    """The load generator's entry point (a separate process)."""
    import uvloop

    raise_fd_limit()
    sys.path.insert(0, str(ROOT))
    uvloop.run(storm(args, ready, killed_at, out))


def keep_publishing(url: str, prefix: str, rate: int, stop: threading.Event) -> None:
    """`rate` ticks/s over the 20 symbols until `stop` (a background thread)."""
    client = redis.Redis.from_url(url)
    sent, start, price = 0, time.perf_counter(), 100.0
    while not stop.is_set():
        due = int(rate * (time.perf_counter() - start)) - sent
        if due <= 0:
            time.sleep(0.005)
            continue
        pipe = client.pipeline(transaction=False)
        for _ in range(due):
            symbol = SYMBOLS[sent % len(SYMBOLS)]
            price += 0.01
            record = {"symbol": symbol, "last_price": round(price, 2), "sent_ns": time.time_ns()}
            pipe.publish(f"{prefix}market_data:{symbol}", orjson.dumps(record))
            sent += 1
        pipe.execute()
    client.close()


def seed_state(client: redis.Redis, prefix: str, symbols: int, port: int, token: str) -> None:
    """Publish one tick for each of `symbols` quiet symbols; return once the state holds them."""
    pipe = client.pipeline(transaction=False)
    for i in range(symbols):
        record = {"symbol": f"Q{i:05d}USDT", "last_price": 1.0 + i, "sent_ns": time.time_ns()}
        pipe.publish(f"{prefix}market_data:Q{i:05d}USDT", orjson.dumps(record))
    pipe.execute()

    def held() -> bool:
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/v1/state", headers={"Authorization": f"Bearer {token}"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310  (http, loopback)
            state: dict[str, Any] = orjson.loads(response.read())
        quiet = [name for name in state.get("market_data", {}) if name.startswith("Q")]
        return len(quiet) >= symbols

    wait_until(held, timeout=60, what="the seeded state")


def seed_reference(client: redis.Redis, prefix: str, symbols: int, ports: tuple[int, int]) -> None:
    """The same quiet symbols for the reference servers; return once both snapshots hold them."""
    from websockets.sync.client import connect as ws_connect

    def held() -> bool:
        pipe = client.pipeline(transaction=False)
        for i in range(symbols):  # again each time: the servers may subscribe after the first
            record = {"symbol": f"Q{i:05d}USDT", "last_price": 1.0 + i, "sent_ns": time.time_ns()}
            pipe.publish(f"{prefix}market_data:Q{i:05d}USDT", orjson.dumps(record))
        pipe.execute()
        for port in ports:
            with ws_connect(f"ws://127.0.0.1:{port}/ws", max_size=None) as ws:
                snapshot = orjson.loads(ws.recv(timeout=10))
            if len(snapshot["data"]) < symbols:
                return False
        return True

    wait_until(held, timeout=60, what="the seeded reference state")


def main() -> None:
    """One storm; the figures, then the JSON object as the last line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=5000)
    parser.add_argument("--rate", type=int, default=200, help="ticks per second throughout")
    parser.add_argument("--resume", action="store_true", help="reconnect with since/epoch")
    parser.add_argument("--server", choices=("uvicorn", "daphne", "reference"), default="uvicorn")
    parser.add_argument(
        "--state-symbols",
        type=int,
        default=0,
        help="symbols published once before the clients connect (a desk's state: snapshots "
        "carry them, updates only the 20 that tick)",
    )
    args = parser.parse_args()
    raise_fd_limit()
    url = os.environ.get("DASHBOARD_REDIS_URL", "redis://127.0.0.1:6379/0")
    prefix = f"storm-{uuid.uuid4().hex[:8]}"
    setup = {"DASHBOARD_SECRET_KEY": "bench", **database_env()}
    run_command(["migrate", "--no-input"], env=setup, timeout=300)
    token = issue_token(f"storm-{uuid.uuid4().hex[:8]}", env=setup)
    port_a, port_b = free_port(), free_port()
    base_env = {
        "prefix": prefix,
        "redis_url": url,
        "DASHBOARD_LOG_LEVEL": "WARNING",
        "DASHBOARD_WEB_SERVER": args.server,
        **database_env(),
        **UNLIMITED_CLIENTS_ENV,
    }
    logs = Path("/tmp") / prefix
    logs.mkdir()
    env_a = isolated_env(**base_env, DASHBOARD_PORT=str(port_a))
    # One deployment: B shares A's prefix and input channels (isolated_env would pick new
    # backend ports, which nothing serves either way).
    env_b = {**env_a, "DASHBOARD_PORT": str(port_b)}
    ctx = multiprocessing.get_context("spawn")
    reference = args.server == "reference"
    servers: list[Any] = []  # what to stop: ManagedProcess or multiprocessing.Process
    if reference:
        ref_a, ref_b = (
            ctx.Process(target=reference_process, args=(port, url, f"{prefix}:"))
            for port in (port_a, port_b)
        )
        ref_a.start()
        ref_b.start()
        servers = [ref_a, ref_b]
        pid_a, pid_b = ref_a.pid, ref_b.pid
    else:
        worker = ManagedProcess(["run_aggregator"], env=env_a, log_path=logs / "worker.log")
        web_a = ManagedProcess(["serve"], env=env_a, log_path=logs / "web_a.log")
        web_b = ManagedProcess(["serve"], env=env_b, log_path=logs / "web_b.log")
        servers = [web_a, web_b, worker]
        pid_a, pid_b = web_a.pid, web_b.pid
    assert pid_a is not None
    assert pid_b is not None
    client = redis.Redis.from_url(url)
    stop = threading.Event()
    publisher = threading.Thread(target=keep_publishing, args=(url, f"{prefix}:", args.rate, stop))
    load = os.getloadavg()
    print(
        f"server={args.server} clients={args.clients} resume={args.resume} rate={args.rate}/s "
        f"state symbols={args.state_symbols} "
        f"cores={os.cpu_count()} load average before {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    try:
        if not reference:
            wait_until(lambda: client.get(f"{prefix}:worker:leader"), timeout=60, what="worker")
        wait_until(lambda: _port_open(port_a) and _port_open(port_b), timeout=60, what="web")
        if args.state_symbols and reference:
            seed_reference(client, f"{prefix}:", args.state_symbols, (port_a, port_b))
        elif args.state_symbols:
            seed_state(client, f"{prefix}:", args.state_symbols, port_a, token)
        publisher.start()
        ready, out = ctx.Event(), ctx.Queue()
        killed_at = ctx.Value("d", 0.0)
        loader_args = {
            "clients": args.clients,
            "port_a": port_a,
            "port_b": port_b,
            "token": token,
            "resume": args.resume,
        }
        loader = ctx.Process(target=client_process, args=(loader_args, ready, killed_at, out))
        connect_started = time.perf_counter()
        loader.start()
        # Polled, so that a load generator that died (a handshake without a 101 within 60 s)
        # ends the run at once rather than after the whole timeout.
        wait_until(
            lambda: ready.is_set() or not loader.is_alive(), timeout=600, what="clients on A"
        )
        if not ready.is_set():
            raise RuntimeError(f"the load generator exited ({loader.exitcode}) first")
        connect_s = time.perf_counter() - connect_started
        time.sleep(2.0)  # a few updates on A first, so that the clients hold a seq to resume from
        cpu_b0, _ = proc_stat(pid_b)
        wchar_b0 = wchar(pid_b)
        overflows0 = listen_overflows()
        killed_at.value = time.time()
        os.kill(pid_a, signal.SIGTERM)
        result = out.get(timeout=STORM_TIMEOUT_S + 60)
        cpu_b1, rss_b = proc_stat(pid_b)
        wchar_b1 = wchar(pid_b)
        overflows = listen_overflows() - overflows0
        loader.join(timeout=60)
    finally:
        stop.set()
        if publisher.is_alive():
            publisher.join(timeout=10)
        for server in servers:
            server.terminate()
            if isinstance(server, multiprocessing.process.BaseProcess):
                server.join(timeout=15)
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()
    figures: dict[str, Any] = {
        "server": args.server,
        "clients": args.clients,
        "resume": args.resume,
        "state_symbols": args.state_symbols,
        "connect_to_a_s": round(connect_s, 1),
        "current": result["current"],
        "errors": result["error_count"],
        "all_current_s": _round(result["all_current_s"]),
        "current_p50_s": _round(result["current_p50_s"]),
        "current_p99_s": _round(result["current_p99_s"]),
        "first_current_s": _round(result["first_current_s"]),
        **{
            key: _round(result[key])
            for key in (
                "dropped_p50_s",
                "last_dropped_s",
                "handshake_p50_s",
                "handshake_p99_s",
                "first_frame_p50_s",
                "first_frame_p99_s",
            )
        },
        "b_cpu_s": round(cpu_b1 - cpu_b0, 2),
        "b_cpu_ms_per_client": round(1000 * (cpu_b1 - cpu_b0) / args.clients, 3),
        "b_written_mib": round((wchar_b1 - wchar_b0) / 2**20, 2),
        "received_from_b_until_current_mib": round(result["received_from_b_bytes"] / 2**20, 2),
        "b_rss_mib": round(rss_b / 1024, 1),
        "listen_overflows": overflows,
        "recovered": result["answers"]["recovered"],
        "recovered_span_p50": result["recovered_span_p50"],
        "recovered_span_max": result["recovered_span_max"],
        "frames_after_recovered": result["frames_after_recovered"],
        "snapshots": result["answers"]["snapshot"],
        "snapshots_not_recovered": result["answers"]["snapshot_not_recovered"],
        **{k: v for k, v in result["answers"].items() if k.startswith("reason_")},
        "load_average_after": round(os.getloadavg()[0], 2),
    }
    for key, value in figures.items():
        print(f"{key:>34}: {value}")
    if result["errors"]:
        print(f"errors, e.g.: {result['errors']}")
    print(json.dumps(figures))


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


if __name__ == "__main__":
    main()
