"""Fault tests on the real topology as processes: two web processes, two workers, the
recorder and the simulator, on a Redis server of the test's own (so that restarting it harms
nobody else) and a database of its own (contract section 8)."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from django.conf import settings
from psycopg import sql

from shared.core.changes import apply_changes
from support.processes import free_port, scratch_database, wait_until
from tests.e2e.stack import Stack, connect, decode, wait_quiet

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.faults]


class PrivateRedis:
    """A redis-server on a free loopback port, restartable."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start it and wait until it answers PING."""
        server = shutil.which("redis-server")
        assert server, "redis-server must be installed (.ci/run installs it)"
        self.process = subprocess.Popen(
            [
                server,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(self.answers, timeout=20, what="redis-server")

    def stop(self) -> None:
        """Stop it (no persistence: everything it held is gone)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def answers(self) -> bool:
        """Whether it answers PING."""
        try:
            client = redis.Redis.from_url(self.url, socket_timeout=1)
            ok = bool(client.ping())
            client.close()
            return ok
        except redis.RedisError:
            return False


@dataclass
class Follower:
    """A WebSocket client that applies everything it receives, in the background."""

    url: str
    state: dict[str, Any] = field(default_factory=dict)
    seq: int = 0
    snapshots: int = 0
    updates: dict[int, Any] = field(default_factory=dict)
    close_code: int | None = None
    backwards: int = 0
    # Each frame's time.monotonic() on arrival, type and seq.
    arrivals: list[tuple[float, str, int]] = field(default_factory=list)

    async def run(self) -> None:
        """Follow until the connection closes."""
        async with connect(self.url) as ws:
            try:
                async for message in ws:
                    frame = decode(message)
                    if frame["type"] not in ("snapshot", "update"):
                        continue  # status, shutdown, notice: not the state
                    self.arrivals.append((time.monotonic(), frame["type"], frame["seq"]))
                    if frame["seq"] < self.seq:
                        self.backwards += 1
                    if frame["type"] == "snapshot":
                        self.snapshots += 1
                        self.state = copy.deepcopy(frame["data"])
                    elif frame["type"] == "update":
                        apply_changes(self.state, frame["changes"])
                        self.updates[frame["seq"]] = frame["changes"]
                    self.seq = max(self.seq, frame["seq"])
            finally:
                self.close_code = ws.close_code


@contextlib.asynccontextmanager
async def following(urls: list[str]) -> AsyncIterator[list[Follower]]:
    """Followers on `urls`, each connected and holding its first snapshot."""
    followers = [Follower(url) for url in urls]
    tasks = [asyncio.create_task(f.run()) for f in followers]
    try:
        for follower in followers:
            while follower.snapshots == 0:  # noqa: ASYNC110  # polls another task's progress
                await asyncio.sleep(0.02)
        yield followers
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def topology(private_redis: PrivateRedis, tmp_path: Path) -> Iterator[Stack]:
    """Two web processes, two workers (the first leads), the recorder and the simulator."""
    with running_desk(Stack(redis_url=private_redis.url, log_dir=tmp_path), webs=2) as stack:
        yield stack


@contextlib.contextmanager
def running_desk(stack: Stack, *, webs: int) -> Iterator[Stack]:
    """`stack` on a scratch database: two workers (the first leads), `webs` web processes, the
    recorder and the simulator at 100 ticks/s; every process stopped on exit."""
    db = settings.DATABASES["default"]
    server = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}"
    name = f"faults_{int(time.time() * 1000)}"
    with scratch_database(server, name) as database_url:
        stack.env["DASHBOARD_DATABASE_URL"] = database_url
        stack.env["DASHBOARD_SIMULATOR_TICKS_PER_S"] = "100"
        stack.env["DASHBOARD_HISTORY_CLAIM_IDLE_S"] = "2"
        try:
            migrate = stack.start("migrate", "migrate")
            assert migrate.process.wait(timeout=120) == 0, migrate.output()
            migrate.terminate()  # exited already; closes its log
            stack.processes.remove(migrate)
            stack.start_worker("worker-1")
            stack.start_worker("worker-2")
            for n in range(1, webs + 1):
                stack.start_web(f"web-{n}")
            stack.start("run_recorder", "recorder")
            stack.start_simulator()
            wait_until(lambda: stack.seq() > 0, timeout=30, what="the simulator's ticks")
            yield stack
        finally:
            stack.stop()


def urls(stack: Stack) -> list[str]:
    out = []
    for port in stack.web_ports:
        out += [stack.ws_url(port), stack.ws_url(port, type="tui", format="msgpack")]
    return out


def leader(stack: Stack) -> bytes | None:
    value = stack.redis.get(f"{stack.prefix}:worker:leader")
    return value if isinstance(value, bytes) else None


def process(stack: Stack, name: str) -> Any:
    return next(p for p in stack.processes if p.log_path.name == f"{name}.log")


async def settle_and_compare(
    stack: Stack, followers: list[Follower], port: int | None = None
) -> None:
    """Stop the simulator, wait until nothing changes, and compare every follower."""
    process(stack, "simulator").terminate()
    target = wait_quiet(stack, quiet_s=1.0, timeout=30)
    for follower in followers:
        deadline = time.monotonic() + 10
        while follower.seq < target and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    async with connect(stack.ws_url(port)) as fresh:
        expected = decode(await fresh.recv())
    for follower in followers:
        assert follower.close_code is None, follower.url
        assert follower.backwards == 0, follower.url
        assert (follower.seq, follower.state) == (expected["seq"], expected["data"]), follower.url


def same_stream(followers: list[Follower]) -> None:
    """Clients of the same cadence on both web processes saw the same updates."""
    by_kind: dict[str, list[Follower]] = {}
    for follower in followers:
        by_kind.setdefault(follower.url.split("?")[-1], []).append(follower)
    for group in by_kind.values():
        first, *others = group
        for other in others:
            common = set(first.updates) & set(other.updates)
            assert common
            assert all(first.updates[s] == other.updates[s] for s in common)


async def test_sigkill_of_the_leader_worker(topology: Stack) -> None:
    stack = topology
    async with following(urls(stack)) as followers:
        # given a leader, a standby and clients on both web processes
        first_leader = leader(stack)
        killed = next(p for p in stack.processes if p.log_path.name.startswith("worker-1"))
        await asyncio.sleep(1.0)  # updates flow for a while (not a wait for a condition)
        # when the leader is killed outright
        started = time.monotonic()
        killed.kill()
        # then the standby leads within 5 s, no client is disconnected, and every client
        # ends with exactly the state a fresh client gets
        wait_until(lambda: (v := leader(stack)) and v != first_leader, timeout=10, what="leader")
        takeover_s = time.monotonic() - started
        print(f"takeover after SIGKILL: {takeover_s:.2f} s")
        assert takeover_s < 5.0
        seq_at_kill = stack.seq()
        wait_until(lambda: stack.seq() > seq_at_kill + 20, timeout=10, what="ticks after takeover")
        await settle_and_compare(stack, followers)
        same_stream(followers)


async def test_redis_restart(topology: Stack, private_redis: PrivateRedis) -> None:
    stack = topology
    async with following(urls(stack)) as followers:
        before = [f.snapshots for f in followers]
        seq_before = stack.seq()
        # when Redis restarts and forgets everything (no persistence)
        private_redis.stop()
        # then every web process says it is not ready, naming Redis
        for port in stack.web_ports:
            status, body = await asyncio.to_thread(readiness, port)
            assert status == 503
            assert body["checks"]["redis"]["status"] == "down", body
        private_redis.start()
        # then every process recovers by itself and clients get a fresh snapshot
        wait_until(lambda: stack.seq() > seq_before, timeout=30, what="the state again")
        for port in stack.web_ports:
            wait_until(lambda p=port: readiness(p)[0] == 200, timeout=30, what="readiness")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(  # noqa: ASYNC110
            f.snapshots == b for f, b in zip(followers, before, strict=True)
        ):
            await asyncio.sleep(0.1)
        assert all(f.snapshots > b for f, b in zip(followers, before, strict=True))
        assert all(p.alive() for p in stack.processes), [p.args for p in stack.processes]
        await settle_and_compare(stack, followers)


async def test_sigterm_of_a_web_process_sends_clients_to_the_other(topology: Stack) -> None:
    stack = topology
    first, second = stack.web_ports
    async with following([stack.ws_url(first)]) as (leaving,):
        web = process(stack, "web-1")
        code = web.terminate(timeout=15)
        for _ in range(200):
            if leaving.close_code is not None:
                break
            await asyncio.sleep(0.05)
        assert leaving.close_code == 1001
        assert code in (0, -15), web.output()[-2000:]
    # the client reconnects to the other web process and resumes from a snapshot
    async with following([stack.ws_url(second)]) as (moved,):
        assert moved.seq >= leaving.seq
        await settle_and_compare(stack, [moved], port=second)


async def test_postgres_refusing_the_recorder_for_60_s_loses_no_tick(topology: Stack) -> None:
    stack = topology
    dsn = stack.env["DASHBOARD_DATABASE_URL"]
    admin_dsn = dsn.rsplit("/", 1)[0] + "/postgres"
    name = dsn.rsplit("/", 1)[1]
    process(stack, "simulator").terminate()
    simulator = stack.start_simulator(DASHBOARD_SIMULATOR_TICKS_PER_S="1000")
    wait_until(lambda: _rows(dsn) > 0, timeout=30, what="history rows")
    # when PostgreSQL refuses the recorder for 60 s while ticks flow at 1,000/s (the same
    # errors a stopped server gives; see docs/HISTORY.md for why the server is not stopped)
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        admin.execute(
            sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(sql.Identifier(name))
        )
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
        )
        try:
            # the web processes say they are not ready, naming the database
            for port in stack.web_ports:
                status, body = await asyncio.to_thread(readiness, port)
                assert status == 503
                assert body["checks"]["database"]["status"] == "down", body
            await asyncio.sleep(60)  # the outage's length is the test's subject, not a wait
        finally:
            admin.execute(
                sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true").format(sql.Identifier(name))
            )
    for port in stack.web_ports:
        wait_until(lambda p=port: readiness(p)[0] == 200, timeout=30, what="readiness")
    simulator.terminate()
    wait_quiet(stack, quiet_s=1.0, timeout=30)
    # then, once the stream drains, every change the workers logged is in the tables. The
    # standby stops first: a takeover would hand over its recent rows, whose copies the leader
    # logged are dropped by key (counted as appended twice; test_standby.py counts by key).
    for worker in ("worker-2", "worker-1"):
        process(stack, worker).terminate()
    appended = sum(_appended(process(stack, w).output()) for w in ("worker-1", "worker-2"))
    wait_until(lambda: _rows(dsn) >= appended, timeout=60, what="the backlog to be recorded")
    print(f"history rows {_rows(dsn)}, appended by the workers {appended}")
    assert _rows(dsn) == appended


def readiness(port: int) -> tuple[int, dict[str, Any]]:
    """`GET /health/ready` of a web process: its status and body."""
    from urllib.error import HTTPError
    from urllib.request import urlopen

    try:
        with urlopen(f"http://127.0.0.1:{port}/health/ready", timeout=10) as response:
            return response.status, json.loads(response.read())
    except HTTPError as error:
        return error.code, json.loads(error.read())


def _rows(dsn: str) -> int:
    tables = [
        "history_markettick",
        "history_orderevent",
        "history_positionsnapshot",
        "history_accountsnapshot",
        "history_strategysnapshot",
    ]
    try:
        with psycopg.connect(dsn, connect_timeout=2) as conn:
            return sum(
                int(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0])  # noqa: S608
                for t in tables
            )
    except psycopg.OperationalError:
        return 0


def _appended(log: str) -> int:
    """Rows a worker appended to the history stream, from its last 'stepped down' line, less
    its repeats: rows logged again byte for byte (same dedupe key and time), stored once."""
    total = 0
    for line in log.splitlines():
        if '"stepped down"' in line:
            fields = json.loads(line)
            total = int(fields["appended"]) - int(fields["repeats"])
    return total
