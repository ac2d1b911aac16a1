"""Admission benchmark: how fast one web process lets authenticated WebSocket clients in.

Starts a worker and one web process (uvicorn by default, `--server daphne`) on their own Redis
prefix, then, from a separate load-generator process, opens `--clients` connections at
`--rates` connections a second (0: as fast as `CONCURRENCY` handshakes in flight allow), once per
credential mode:

- `header`: a token in `Authorization: Bearer`;
- `query`: a token in `?token=`;
- `cookie`: a login session's `sessionid` cookie (a user created for the run).

Each connection is timed from its TCP connect to the upgrade (`open`) and to its first frame,
the snapshot (`first`). The web process's CPU seconds over the ramp (from /proc) divided by the
connections gives the server CPU per connection. Each (mode, rate) gets a fresh web process, so
no connection of one run is open during another. Everything shares the machine's cores.

Run: `.venv/bin/python bench/admission.py [--clients 2000] [--rates 500,0]
[--modes header,query,cookie] [--server daphne]`.
Last line: one JSON object of the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.fanout import _port_open, proc_stat, raise_fd_limit  # noqa: E402
from support.processes import (  # noqa: E402
    UNLIMITED_CLIENTS_ENV,
    ManagedProcess,
    free_port,
    isolated_env,
    issue_token,
    run_command,
    wait_until,
)

CONCURRENCY = 200  # handshakes in flight at most (rate 0: as fast as this allows)
MODES = ("header", "query", "cookie")

_SESSION_CODE = """
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.contrib.sessions.backends.db import SessionStore
user, _ = get_user_model().objects.get_or_create(username="{name}")
user.set_unusable_password()
user.save()
session = SessionStore()
session[SESSION_KEY] = str(user.pk)
session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
session[HASH_SESSION_KEY] = user.get_session_auth_hash()
session.create()
print(session.session_key)
"""


class ProfiledServe(ManagedProcess):
    """`manage.py serve` under cProfile (py-spy is not installed here); written on SIGTERM.

    uvicorn re-raises the SIGTERM it caught once it has shut down, which would end the process
    before the profile is written: the wrapper makes that a no-op.
    """

    def __init__(self, *, env: dict[str, str], log_path: Path, code: str) -> None:
        self.args = ["serve"]
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-c", code],
            cwd=ROOT,
            env={"PATH": os.environ["PATH"], "PYTHONUNBUFFERED": "1", **env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )


# Every garbage collection of the web process over 5 ms, one line each on its log.
_GC_LOG = """
import gc, sys, time
started = [0.0]
def timed(phase, info):
    if phase == "start":
        started[0] = time.perf_counter()
    elif (spent := time.perf_counter() - started[0]) > 0.005:
        print(f"gc-stall gen={info['generation']} ms={spent * 1000:.1f}", file=sys.stderr)
gc.callbacks.append(timed)
sys.argv = ["manage.py", "serve"]
from manage import main
main()
"""

_PROFILED = """
import cProfile, signal, sys
signal.raise_signal = lambda _signal: None
sys.argv = ["manage.py", "serve"]
from manage import main
profile = cProfile.Profile()
try:
    profile.runcall(main)
finally:
    profile.dump_stats({out!r})
"""


def database_env() -> dict[str, str]:
    """The caller's DASHBOARD_DATABASE_URL, passed on to the processes started (if set)."""
    url = os.environ.get("DASHBOARD_DATABASE_URL")
    return {"DASHBOARD_DATABASE_URL": url} if url else {}


def percentile(values: list[float], q: float) -> float:
    """The `q` quantile (0..1) of `values`, nearest rank."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(len(ordered) * q + 0.5) - 1))]


async def run_clients(
    port: int, path: str, headers: list[tuple[str, str]], count: int, rate: float, out: Any
) -> None:
    """Open `count` connections at `rate`/s (0: flat out), time each, then close them all."""
    from bench.wsload import LeanClient, connect

    opened: list[float] = []
    first: list[float] = []
    errors: list[str] = []
    clients: list[LeanClient] = []
    slots = asyncio.Semaphore(CONCURRENCY)
    loop = asyncio.get_running_loop()

    async def open_one() -> None:
        async with slots:
            started = time.perf_counter()
            got_first: asyncio.Future[float] = loop.create_future()

            def on_frame(_opcode: int, _data: bytes) -> None:
                if not got_first.done():
                    got_first.set_result(time.perf_counter())

            try:
                client = await connect("127.0.0.1", port, path, on_frame, headers)
                opened.append(time.perf_counter() - started)
                clients.append(client)
                done, _ = await asyncio.wait(
                    (got_first, client.closed), timeout=30, return_when=asyncio.FIRST_COMPLETED
                )
                if got_first not in done:
                    code = client.closed.result() if client.closed.done() else "none in 30 s"
                    raise ConnectionError(f"no snapshot; close code {code}")
                first.append(got_first.result() - started)
            except (OSError, TimeoutError, ConnectionError) as exc:
                errors.append(type(exc).__name__ + ": " + str(exc)[:60])

    begun = time.perf_counter()
    tasks = []
    for i in range(count):
        if rate:
            due = begun + i / rate
            if (wait := due - time.perf_counter()) > 0:
                await asyncio.sleep(wait)
        tasks.append(asyncio.create_task(open_one()))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - begun
    out.put({"opened": opened, "first": first, "errors": errors, "elapsed_s": elapsed})
    for client in clients:
        client.close()


def client_process(
    port: int, path: str, headers: list[tuple[str, str]], count: int, rate: float, out: Any
) -> None:
    """The load generator's entry point (a separate process)."""
    import uvloop

    raise_fd_limit()
    sys.path.insert(0, str(ROOT))
    uvloop.run(run_clients(port, path, headers, count, rate, out))


def run_one(args: argparse.Namespace, mode: str, rate: float) -> dict[str, Any]:
    """One ramp of `args.clients` connections in `mode` at `rate`; its figures."""
    url = os.environ.get("DASHBOARD_REDIS_URL", "redis://127.0.0.1:6379/0")
    prefix = f"admit-{uuid.uuid4().hex[:8]}"
    port = free_port()
    env = isolated_env(
        prefix=prefix,
        redis_url=url,
        DASHBOARD_LOG_LEVEL=args.log_level,
        DASHBOARD_PORT=str(port),
        DASHBOARD_WEB_SERVER=args.server,
        **database_env(),
        **UNLIMITED_CLIENTS_ENV,
    )
    logs = Path("/tmp") / prefix
    logs.mkdir()
    worker = ManagedProcess(["run_aggregator"], env=env, log_path=logs / "worker.log")
    if args.profile:
        code = _PROFILED.format(out=args.profile)
        web: ManagedProcess = ProfiledServe(env=env, log_path=logs / "web.log", code=code)
    elif args.gc_log:
        web = ProfiledServe(env=env, log_path=logs / "web.log", code=_GC_LOG)
    else:
        web = ManagedProcess(["serve"], env=env, log_path=logs / "web.log")
    client = redis.Redis.from_url(url)
    path = "/ws?type=web&format=json"
    headers: list[tuple[str, str]] = []
    if mode == "header":
        headers.append(("Authorization", f"Bearer {args.token}"))
    elif mode == "query":
        path += f"&token={args.token}"
    else:
        headers.append(("Cookie", f"sessionid={args.session}"))
    try:
        wait_until(lambda: client.get(f"{prefix}:worker:leader"), timeout=60, what="worker")
        wait_until(lambda: _port_open(port), timeout=60, what="web")
        ctx = multiprocessing.get_context("spawn")
        out = ctx.Queue()
        # One connection first, so that the process's first-use costs (the hub, the token
        # cache's first miss) are not charged to the ramp — a warm process is what reconnects.
        warm = ctx.Process(target=client_process, args=(port, path, headers, 1, 0, out))
        warm.start()
        warm_result = out.get(timeout=60)
        warm.join(timeout=30)
        if warm_result["errors"]:
            raise RuntimeError(f"warm-up connection failed: {warm_result['errors']}")
        load = ctx.Process(
            target=client_process, args=(port, path, headers, args.clients, rate, out)
        )
        cpu0, _ = proc_stat(web.pid)
        load.start()
        result = out.get(timeout=600)
        cpu1, rss = proc_stat(web.pid)
        load.join(timeout=60)
    finally:
        web.terminate()
        worker.terminate()
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()
    connected = len(result["first"])
    stalls = [
        float(line.rsplit("ms=", 1)[1])
        for line in web.output().splitlines()
        if line.startswith("gc-stall")
    ]
    if args.gc_log:
        print(f"  {mode} at {rate or 'max'}: {len(stalls)} collections over 5 ms, {stalls[-10:]}")
    return {
        "mode": mode,
        "rate_asked": rate or "max",
        "connected": connected,
        "errors": len(result["errors"]),
        "achieved_per_s": round(connected / result["elapsed_s"], 1),
        "open_p50_ms": round(1000 * percentile(result["opened"], 0.5), 1),
        "open_p99_ms": round(1000 * percentile(result["opened"], 0.99), 1),
        "first_p50_ms": round(1000 * percentile(result["first"], 0.5), 1),
        "first_p99_ms": round(1000 * percentile(result["first"], 0.99), 1),
        "cpu_ms_per_conn": round(1000 * (cpu1 - cpu0) / max(connected, 1), 3),
        "web_rss_mib": round(rss / 1024, 1),
        "sample_errors": result["errors"][:3],
    }


def main() -> None:
    """Every (mode, rate) ramp; the table, then the JSON object as the last line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=2000)
    parser.add_argument("--rates", default="500,0", help="connections/s; 0 = flat out")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--server", choices=("uvicorn", "daphne"), default="uvicorn")
    parser.add_argument("--log-level", default="WARNING")
    parser.add_argument(
        "--gc-log", action="store_true", help="report the web process's collections over 5 ms"
    )
    parser.add_argument(
        "--profile", help="write a cProfile of the web process (its main thread) to this file"
    )
    args = parser.parse_args()
    raise_fd_limit()
    # The web processes' key (isolated_env's): a session's auth hash is signed with it.
    env = {"DASHBOARD_SECRET_KEY": "test-only-secret-key", **database_env()}
    run_command(["migrate", "--no-input"], env=env, timeout=300)
    args.token = issue_token(f"admit-{uuid.uuid4().hex[:8]}", env=env)
    args.session = (
        run_command(
            ["shell", "-c", _SESSION_CODE.format(name=f"admit-{uuid.uuid4().hex[:6]}")], env=env
        )
        .strip()
        .splitlines()[-1]
    )
    load = os.getloadavg()
    print(
        f"server={args.server} clients={args.clients} cores={os.cpu_count()} "
        f"load average before {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    header = (
        "mode",
        "rate_asked",
        "connected",
        "errors",
        "achieved_per_s",
        "open_p50_ms",
        "open_p99_ms",
        "first_p50_ms",
        "first_p99_ms",
        "cpu_ms_per_conn",
    )
    print(" ".join(f"{h:>14}" for h in header))
    figures: dict[str, Any] = {"server": args.server, "clients": args.clients}
    for rate in (float(r) for r in args.rates.split(",")):
        for mode in args.modes.split(","):
            row = run_one(args, mode, rate)
            print(" ".join(f"{row[h]!s:>14}" for h in header))
            if row["sample_errors"]:
                print(f"  errors, e.g.: {row['sample_errors']}")
            tag = f"{mode}_at_{row['rate_asked']}"
            for key, value in row.items():
                if key not in ("mode", "rate_asked", "sample_errors"):
                    figures[f"{key}_{tag}"] = value
    figures["load_average_after"] = round(os.getloadavg()[0], 2)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
