"""Soak: the whole product under steady load for a long time, watching memory and delivery.

Starts two web processes, two workers (leader + standby), the recorder and the simulator
(`--rate` ticks/s over 20 symbols) on their own Redis prefix and a database of their own, and
connects `--clients` WebSocket clients (a separate process, spread over both web processes).
Every `--sample-s` it records each process's RSS; at the end it checks that every client is
still connected, received updates the whole time with no error frame, and that the RSS of every
process grew by no more than 10 % from the first sample taken after warm-up to the last.

The web processes' resume rings (contract 4.1) fill for `resume_span_s` and then stay at their
bound: growth that is no leak. So the soak gives them a span of half a sample interval, which
they reach before the first sample after warm-up; the ring's own memory at the default span is
measured in docs/BENCHMARKS.md ("Resume ring memory") and bounded by `resume_max_bytes`.

Run: `.venv/bin/python bench/soak.py --minutes 30` (the CI-sized run: `--minutes 2`).
Last line: one JSON object of the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.fanout import proc_stat, raise_fd_limit  # noqa: E402
from support.processes import (  # noqa: E402
    UNLIMITED_CLIENTS_ENV,
    ManagedProcess,
    free_port,
    isolated_env,
    issue_token,
    scratch_database,
    wait_until,
)

CONNECT_BATCH = 100


async def run_clients(
    ports: list[int], path: str, count: int, quiet: Any, stop: Any, out: Any
) -> None:
    """Hold `count` connections until `stop` is set; report frames, silences and last seqs.

    Silences count only until `quiet` is set: then the desk is stopped on purpose, and the
    state settling for seconds with nothing to send is not a client left without updates.
    """
    from bench.wsload import LeanClient, connect

    frames = [0] * count
    errors = [0] * count
    last_seq = [0] * count
    last_frame = [0.0] * count
    clients: list[LeanClient] = []

    def handler(index: int) -> Any:
        def on_frame(opcode: int, data: bytes) -> None:
            frames[index] += 1
            last_frame[index] = time.monotonic()
            if b'"type":"error"' in data:
                errors[index] += 1
            at = data.find(b'"seq":')
            if at >= 0:
                end = data.find(b",", at)
                last_seq[index] = max(last_seq[index], int(data[at + 6 : end]))

        return on_frame

    for start in range(0, count, CONNECT_BATCH):
        batch = range(start, min(count, start + CONNECT_BATCH))
        clients += await asyncio.gather(
            *(connect("127.0.0.1", ports[i % len(ports)], path, handler(i)) for i in batch)
        )
    gaps = [0.0] * count
    while not stop.is_set():
        await asyncio.sleep(1.0)
        now = time.monotonic()
        if quiet.is_set():
            continue
        for i in range(count):
            gaps[i] = max(gaps[i], now - last_frame[i])
    closed = sum(1 for c in clients if c.closed.done())
    for client in clients:
        client.close()
    out.put(
        {
            "frames_min": min(frames),
            "frames_total": sum(frames),
            "error_frames": sum(errors),
            "closed_early": closed,
            "longest_silence_s": round(max(gaps), 2),
            "last_seqs": last_seq,
        }
    )


def client_process(
    ports: list[int], path: str, count: int, quiet: Any, stop: Any, out: Any
) -> None:
    """The load generator's entry point."""
    import uvloop

    raise_fd_limit()
    sys.path.insert(0, str(ROOT))
    uvloop.run(run_clients(ports, path, count, quiet, stop, out))


def main() -> None:
    """Run the soak and print the RSS table; the last line is the JSON object."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--sample-s", type=float, default=60.0)
    args = parser.parse_args()
    raise_fd_limit()
    seconds = args.minutes * 60
    sample_s = min(args.sample_s, seconds / 4)
    url = os.environ.get("DASHBOARD_REDIS_URL", "redis://127.0.0.1:6379/0")
    server = os.environ.get("DASHBOARD_SOAK_PG", "postgres://postgres@127.0.0.1:5432")
    prefix = f"soak-{uuid.uuid4().hex[:8]}"
    with scratch_database(server, prefix.replace("-", "_")) as database_url:
        env = isolated_env(
            prefix=prefix,
            redis_url=url,
            DASHBOARD_DATABASE_URL=database_url,
            DASHBOARD_LOG_LEVEL="WARNING",
            DASHBOARD_SIMULATOR_TICKS_PER_S=str(args.rate),
            # full before the first sample after warm-up (see the module's docstring)
            DASHBOARD_RESUME_SPAN_S=str(max(1, int(sample_s / 2))),
            **UNLIMITED_CLIENTS_ENV,
        )
        logs = Path("/tmp") / prefix
        logs.mkdir()
        processes: dict[str, ManagedProcess] = {}
        client = redis.Redis.from_url(url)

        def start(name: str, command: str, **extra: str) -> None:
            processes[name] = ManagedProcess([command], env={**env, **extra}, log_path=logs / name)

        try:
            migrate = ManagedProcess(["migrate", "--no-input"], env=env, log_path=logs / "migrate")
            assert migrate.process.wait(timeout=120) == 0, migrate.output()
            path = f"/ws?type=web&format=json&token={issue_token(f'{prefix}-soak', env=env)}"
            ports = [free_port(), free_port()]
            start("web1", "serve", DASHBOARD_PORT=str(ports[0]))
            start("web2", "serve", DASHBOARD_PORT=str(ports[1]))
            start("worker1", "run_aggregator")
            wait_until(lambda: client.get(f"{prefix}:worker:leader"), timeout=60, what="a leader")
            start("worker2", "run_aggregator")
            start("recorder", "run_recorder")
            start("simulator", "simulate")
            wait_until(lambda: all(_port_open(p) for p in ports), timeout=60, what="web")
            ctx = multiprocessing.get_context("spawn")
            out, quiet, stop = ctx.Queue(), ctx.Event(), ctx.Event()
            loader = ctx.Process(
                target=client_process, args=(ports, path, args.clients, quiet, stop, out)
            )
            loader.start()
            samples: list[dict[str, float]] = []
            started = time.monotonic()
            print(
                f"soak: {args.clients} clients on 2 web processes, {args.rate:g} ticks/s, "
                f"{args.minutes:g} min; RSS MiB every {sample_s:g} s"
            )
            print(f"{'t_s':>6} " + " ".join(f"{name:>9}" for name in processes))
            while time.monotonic() - started < seconds:
                time.sleep(sample_s)  # a sampling period, not a wait for a condition
                dead = [name for name, p in processes.items() if not p.alive()]
                assert not dead, f"processes died: {dead}"
                row = {name: proc_stat(p.pid)[1] / 1024 for name, p in processes.items()}
                samples.append(row)
                print(
                    f"{time.monotonic() - started:>6.0f} "
                    + " ".join(f"{row[name]:>9.1f}" for name in processes)
                )
            # Delivery: stop the desk, let the state settle, and check every client has its seq.
            quiet.set()
            processes["simulator"].terminate()
            final_seq = _settled_seq(client, prefix)
            time.sleep(1.0)  # one web cadence and more for the last update to reach every client
            stop.set()
            result = out.get(timeout=120)
            loader.join(timeout=60)
            last_seqs = result.pop("last_seqs")
            result["delivery_pct"] = round(
                100.0 * sum(1 for s in last_seqs if s == final_seq) / len(last_seqs), 2
            )
            recorded = _count_ticks(database_url)
            queue = int(client.xlen(f"{prefix}:history"))
        finally:
            for process in processes.values():
                process.terminate()
            keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
            if keys:
                client.delete(*keys)
            client.close()
    # Growth from the first sample after warm-up (the second one) to the last.
    base = samples[1] if len(samples) > 2 else samples[0]
    growth = {
        name: round(100 * (samples[-1][name] - base[name]) / base[name], 1) for name in processes
    }
    figures: dict[str, Any] = {
        "minutes": args.minutes,
        "clients": args.clients,
        **result,
        "ticks_recorded": recorded,
        "history_queue_end": queue,
        **{f"rss_growth_pct_{name}": value for name, value in growth.items()},
        **{f"rss_mib_end_{name}": round(samples[-1][name], 1) for name in processes},
    }
    ok = (
        result["closed_early"] == 0
        and result["error_frames"] == 0
        and result["longest_silence_s"] < 5
        and all(g <= 10 for g in growth.values())
    )
    figures["passed"] = ok
    print(f"RSS growth % (after warm-up): {growth}")
    print(f"delivery: {result['delivery_pct']} % of clients hold the final seq")
    print(
        f"clients: closed early {result['closed_early']}, error frames {result['error_frames']}, "
        f"longest silence {result['longest_silence_s']} s, frames {result['frames_total']:,}"
    )
    print(json.dumps(figures))
    if not ok:
        raise SystemExit(1)


def _settled_seq(client: redis.Redis, prefix: str) -> int:
    """The shared seq once it has not moved for 2 s (the desk is stopped)."""
    last, since = -1, time.monotonic()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        seq = int(client.get(f"{prefix}:state:seq") or 0)
        if seq != last:
            last, since = seq, time.monotonic()
        elif time.monotonic() - since >= 2.0:
            return seq
        time.sleep(0.1)
    raise AssertionError("the state did not settle")


def _count_ticks(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM history_markettick").fetchone()
    return int(row[0]) if row else 0


def _port_open(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


if __name__ == "__main__":
    main()
