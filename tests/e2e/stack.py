"""The product's real processes on loopback for end-to-end tests: web(s), worker, simulator."""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import msgpack
import orjson
import psycopg
import redis
import websockets
from psycopg import sql
from websockets.asyncio.client import ClientConnection

from shared.core.changes import apply_changes
from support.processes import (
    ManagedProcess,
    free_port,
    isolated_env,
    issue_token,
    run_command,
    wait_until,
)


class Stack:
    """One isolated deployment: its own Redis prefix, backend ports and web ports."""

    def __init__(self, *, redis_url: str, log_dir: Path) -> None:
        self.prefix = f"e2e-{uuid.uuid4().hex[:10]}"
        self.input_prefix = f"{self.prefix}:"
        self.redis_url = redis_url
        self.log_dir = log_dir
        self.redis = redis.Redis.from_url(redis_url)
        self.processes: list[ManagedProcess] = []
        self.web_ports: list[int] = []
        self.env = isolated_env(
            prefix=self.prefix,
            redis_url=redis_url,
            DASHBOARD_DATABASE_URL=e2e_database_url(),
        )

    def start(self, command: str, name: str, **env: str) -> ManagedProcess:
        """Start `manage.py command` with the stack's environment (plus `env`)."""
        process = ManagedProcess(
            [command], env={**self.env, **env}, log_path=self.log_dir / f"{name}.log"
        )
        self.processes.append(process)
        return process

    def start_worker(self, name: str = "worker", **env: str) -> ManagedProcess:
        """Start a worker (with `env` added); wait until it leads, or stands by if one leads."""
        standby = self.redis.get(f"{self.prefix}:worker:leader") is not None
        ready = "worker started" if standby else "cache keys loaded"
        process = self.start("run_aggregator", name, **env)
        wait_until(
            lambda: ready in process.output() or not process.alive(),
            timeout=60,
            what="the worker",
        )
        assert process.alive(), process.output()[-3000:]
        return process

    def start_simulator(self, **env: str) -> ManagedProcess:
        """Start the demo desk publishing into this stack's Redis prefix."""
        return self.start("simulate", "simulator", **env)

    def start_web(
        self, name: str = "web", server: str = "uvicorn", port: int | None = None, **env: str
    ) -> int:
        """Start a web process (on `port`, else a free one), wait until it answers; its port."""
        port = port or free_port()
        process = self.start(
            "serve", name, DASHBOARD_PORT=str(port), DASHBOARD_WEB_SERVER=server, **env
        )
        wait_until(lambda: _answers(port) or not process.alive(), timeout=60, what="the web")
        assert process.alive(), process.output()[-3000:]
        self.web_ports.append(port)
        return port

    def manage(self, *args: str, **env: str) -> str:
        """Run `manage.py args` to completion with the stack's environment; its stdout."""
        return run_command(list(args), env={**self.env, **env})

    def issue_token(self, name: str, *options: str) -> str:
        """Issue an API token in the stack's database (`issue_token` options); its raw key."""
        return issue_token(f"{self.prefix}-{name}", *options, env=self.env)

    @functools.cached_property
    def token(self) -> str:
        """A token for every channel (issued on first use): what tests connect with."""
        return self.issue_token("client")

    def auth_headers(self) -> dict[str, str]:
        """HTTP headers authenticating with the stack's token."""
        return {"Authorization": f"Bearer {self.token}"}

    def ws_url(self, port: int | None = None, *, auth: bool = True, **query: str) -> str:
        """The `/ws` URL of a web process with `query` parameters (and the token unless not)."""
        port = port or self.web_ports[0]
        if auth:
            query.setdefault("token", self.token)
        params = "&".join(f"{k}={v}" for k, v in query.items())
        return f"ws://127.0.0.1:{port}/ws" + (f"?{params}" if params else "")

    def publish(self, kind: str, key: str, record: dict[str, Any]) -> None:
        """Publish one input record as a producer would."""
        self.redis.publish(f"{self.input_prefix}{kind}:{key}", orjson.dumps(record))

    def seq(self) -> int:
        """The shared snapshot's seq (the worker writes it before each broadcast)."""
        return int(self.redis.get(f"{self.prefix}:state:seq") or 0)

    def stop(self) -> None:
        """Stop every process and delete every key of the stack."""
        for process in self.processes:
            process.terminate()
        keys = list(self.redis.scan_iter(match=f"{self.prefix}*", count=1000))
        if keys:
            self.redis.delete(*keys)
        self.redis.close()


@contextlib.contextmanager
def running_stack(log_dir: Path, **web_env: str) -> Iterator[Stack]:
    """A worker and one web process (`web_env` added to its environment), stopped after."""
    from django.conf import settings

    stack = Stack(redis_url=str(settings.CONFIG.redis_url), log_dir=log_dir)
    try:
        stack.start_worker()
        stack.start_web(**web_env)
        yield stack
    finally:
        stack.stop()


@functools.cache
def e2e_database_url() -> str:
    """A freshly migrated database for this test run's stacks (created once per run).

    Named after the suite's own database, so that runs with different DASHBOARD_DATABASE_URLs
    do not share it.
    """
    from django.conf import settings

    db = settings.DATABASES["default"]
    server = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}"
    name = f"{db['NAME']}_e2e"  # the suite's test database name plus _e2e
    with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = f"{server}/{name}"
    env = {"DASHBOARD_SECRET_KEY": "e2e", "DASHBOARD_DATABASE_URL": url}
    run_command(["migrate", "--no-input"], env=env, timeout=300)
    return url


def _answers(port: int) -> bool:
    import http.client

    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
        connection.request("GET", "/health")
        ok = connection.getresponse().status == 200
        connection.close()
        return ok
    except OSError:
        return False


def decode(frame: str | bytes) -> dict[str, Any]:
    """A server frame as a dict: JSON text or MessagePack binary."""
    if isinstance(frame, str):
        return dict(json.loads(frame))
    return dict(msgpack.unpackb(frame))


async def receive(
    ws: ClientConnection,
    timeout: float = 5.0,  # noqa: ASYNC109
    *,
    status: bool = False,
) -> dict[str, Any]:
    """The next frame, decoded; `status` frames are skipped unless `status` is true.

    A status frame (contract 4.1) comes after every snapshot on connect and every few seconds:
    the feed's own heartbeat, which tests of other frames step over.
    """
    import asyncio

    async with asyncio.timeout(timeout):
        while True:
            frame = decode(await ws.recv())
            if status or frame.get("type") != "status":
                return frame


@contextlib.asynccontextmanager
async def connect(url: str, **kwargs: Any) -> AsyncIterator[ClientConnection]:
    """A WebSocket client that is closed however the test ends."""
    async with websockets.connect(url, open_timeout=10, **kwargs) as ws:
        yield ws


def wait_quiet(stack: Stack, *, quiet_s: float = 0.8, timeout: float = 20) -> int:
    """Wait until the stack's seq has not moved for `quiet_s`; return it."""
    last = [stack.seq(), time.monotonic()]

    def quiet() -> bool:
        seq = stack.seq()
        if seq != last[0]:
            last[:] = [seq, time.monotonic()]
            return False
        return time.monotonic() - float(last[1]) >= quiet_s

    wait_until(quiet, timeout=timeout, what="the state to settle")
    return int(last[0])


def post_notice(
    port: int, body: bytes | dict[str, Any], token: str, content_type: str = "application/json"
) -> tuple[int, Any]:
    """`POST /api/v1/notice` on a web process with a bearer token: (status, decoded body).

    A dict is sent as JSON; bytes as they are (malformed bodies).
    """
    import http.client

    data = json.dumps(body).encode() if isinstance(body, dict) else body
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request(
            "POST",
            "/api/v1/notice",
            body=data,
            headers={"Authorization": f"Bearer {token}", "Content-Type": content_type},
        )
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        connection.close()


def worker_and_webs(log_dir: Path, *names: str) -> Iterator[Stack]:
    """A worker and one uvicorn web process per name (`stack.web_ports` in that order)."""
    from django.conf import settings

    deployment = Stack(redis_url=str(settings.CONFIG.redis_url), log_dir=log_dir)
    try:
        deployment.start_worker()
        for name in names:
            deployment.start_web(name)
        yield deployment
    finally:
        deployment.stop()


def tick(stack: Stack, symbol: str, price: float) -> None:
    """Publish one market-data tick."""
    stack.publish("market_data", symbol, {"symbol": symbol, "last_price": price})


class CarefulClient:
    """A client's copy of the state, checking every update's epoch and base_seq against its seq
    as a careful client would (contract 4.1); `frames` lists the (base_seq, seq) it applied."""

    def __init__(self, snapshot: dict[str, Any]) -> None:
        assert snapshot["type"] == "snapshot", snapshot
        self.data: dict[str, Any] = copy.deepcopy(snapshot["data"])
        self.seq: int = snapshot["seq"]
        self.epoch: str = snapshot["epoch"]
        self.frames: list[tuple[int, int]] = []

    def apply(self, frame: dict[str, Any]) -> None:
        assert frame["type"] == "update", frame  # no resync snapshot: nothing was lost
        assert frame["epoch"] == self.epoch
        assert frame["base_seq"] <= self.seq < frame["seq"], (self.seq, frame)
        apply_changes(self.data, frame["changes"])
        self.frames.append((frame["base_seq"], frame["seq"]))
        self.seq = frame["seq"]

    async def follow(self, ws: ClientConnection, until: int) -> None:
        """Apply updates until the client is at `until` or past it."""
        while self.seq < until:
            self.apply(await receive(ws, timeout=10))

    def query(self) -> dict[str, str]:
        """The resume query for where it is."""
        return {"since": str(self.seq), "epoch": self.epoch}
