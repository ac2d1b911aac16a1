"""What one idle WebSocket client costs the web process in memory, and what it is made of.

Runs the configured uvicorn server (`realtime.management.commands.serve.uvicorn_server`) inside
this process, with `tracemalloc` on, and a load-generator process (`bench/wsload.py`'s lean
client) that opens `--clients` `type=web&format=json` connections, then as many again. Between
the two rounds it diffs: the process's RSS, `tracemalloc`'s traced bytes (by source line, and by
file), and the count of every type among the objects the garbage collector tracks — each
divided by the clients of the second round, so every figure is *per client*. What RSS holds
beyond the traced bytes is memory Python's allocator does not see (uvloop's and libuv's own).

No worker runs (nothing is published), so each client holds only what an idle connection holds.
Run: `.venv/bin/python bench/conn_memory.py [--clients 1000] [--top 25]`.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import gc
import multiprocessing
import os
import sys
import time
import tracemalloc
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.fanout import database_env, proc_stat, raise_fd_limit  # noqa: E402
from support.processes import (  # noqa: E402
    UNLIMITED_CLIENTS_ENV,
    free_port,
    isolated_env,
    issue_token,
    run_command,
)


async def _load(port: int, token: str, commands: Any, replies: Any) -> None:
    from bench.wsload import LeanClient, connect

    loop = asyncio.get_running_loop()
    held: list[LeanClient] = []
    slots = asyncio.Semaphore(100)

    async def one() -> None:
        async with slots:
            path = f"/ws?type=web&format=json&token={token}"
            held.append(await connect("127.0.0.1", port, path, lambda _o, _d: None))

    while (count := await loop.run_in_executor(None, commands.get)) > 0:
        await asyncio.gather(*(one() for _ in range(count)))
        replies.put(len(held))
    for client in held:
        client.close()


def load_process(port: int, token: str, commands: Any, replies: Any) -> None:
    """The load generator: opens the clients asked for, round by round (a separate process)."""
    import uvloop

    raise_fd_limit()
    sys.path.insert(0, str(ROOT))
    uvloop.run(_load(port, token, commands, replies))


def _types() -> collections.Counter[str]:
    gc.collect()
    gc.unfreeze()  # frozen objects are in no generation gc.get_objects() reports
    counts = collections.Counter(
        f"{type(o).__module__}.{type(o).__qualname__}" for o in gc.get_objects()
    )
    gc.freeze()
    return counts


async def probe(args: argparse.Namespace, token: str, port: int) -> None:
    """Serve, and measure two rounds of connections."""
    from django.conf import settings

    from realtime.management.commands.serve import uvicorn_server

    server = uvicorn_server(settings.CONFIG)
    serving = asyncio.get_running_loop().create_task(server.serve())
    while not server.started:  # noqa: ASYNC110  (uvicorn sets a flag, no event)
        await asyncio.sleep(0.05)
    ctx = multiprocessing.get_context("spawn")
    commands, replies = ctx.Queue(), ctx.Queue()
    loader = ctx.Process(target=load_process, args=(port, token, commands, replies))
    loader.start()
    loop = asyncio.get_running_loop()

    async def round_of(count: int) -> tuple[int, Any, collections.Counter[str]]:
        commands.put(count)
        await loop.run_in_executor(None, replies.get)
        await asyncio.sleep(2.0)  # the hub's status and presence rounds run once for them
        types = _types()
        return proc_stat(os.getpid())[1], tracemalloc.take_snapshot(), types

    try:
        rss1, snap1, types1 = await round_of(args.clients)
        rss2, snap2, types2 = await round_of(args.clients)
    finally:
        commands.put(0)
        loader.join(timeout=30)
        server.should_exit = True
        await serving
    n = args.clients
    traced = sum(s.size_diff for s in snap2.compare_to(snap1, "filename"))
    print(
        f"clients per round {n}; per client: RSS {(rss2 - rss1) / n:.1f} KiB, "
        f"traced by tracemalloc {traced / n / 1024:.1f} KiB"
    )
    print("\nper client, by file (bytes):")
    for stat in snap2.compare_to(snap1, "filename")[: args.top]:
        name = stat.traceback[0].filename.replace(str(ROOT), ".")
        print(f"{stat.size_diff / n:9.0f}  {stat.count_diff / n:6.1f} blocks  {name}")
    print("\nper client, by line (bytes):")
    for stat in snap2.compare_to(snap1, "lineno")[: args.top]:
        frame = stat.traceback[0]
        name = frame.filename.replace(str(ROOT), ".")
        where = f"{name}:{frame.lineno}"
        print(f"{stat.size_diff / n:9.0f}  {stat.count_diff / n:6.1f} blocks  {where}")
    print("\nper client, objects tracked by the garbage collector, by type:")
    diff = {t: types2[t] - types1.get(t, 0) for t in types2}
    for name, count in sorted(diff.items(), key=lambda item: -item[1])[: args.top]:
        print(f"{count / n:7.2f}  {name}")


def main() -> None:
    """Set the process up as a web process, then probe."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--frames", type=int, default=1, help="tracemalloc traceback depth")
    args = parser.parse_args()
    raise_fd_limit()
    setup = {"DASHBOARD_SECRET_KEY": "bench", **database_env()}
    run_command(["migrate", "--no-input"], env=setup, timeout=300)
    token = issue_token(f"memory-{uuid.uuid4().hex[:8]}", env=setup)
    port = free_port()
    url = os.environ.get("DASHBOARD_REDIS_URL", "redis://127.0.0.1:6379/0")
    os.environ.update(
        isolated_env(
            prefix=f"memory-{uuid.uuid4().hex[:8]}",
            redis_url=url,
            DASHBOARD_PORT=str(port),
            DASHBOARD_LOG_LEVEL="WARNING",
            **database_env(),
            **UNLIMITED_CLIENTS_ENV,
        )
    )
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard_project.settings")
    import django

    django.setup()
    import uvloop

    tracemalloc.start(args.frames)
    started = time.perf_counter()
    uvloop.run(probe(args, token, port))
    print(f"\n({time.perf_counter() - started:.1f} s)")


if __name__ == "__main__":
    main()
