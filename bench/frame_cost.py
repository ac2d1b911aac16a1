"""The web process's CPU cost of one frame to one client, the product's path against uvicorn's.

Runs uvicorn with the product's WebSocket protocol (`realtime.ws_close.PausedCloseProtocol`)
in this process, with an ASGI app that only accepts; a separate process opens `--clients`
connections that read and discard. Then, in rounds alternating between the two, one fresh
~1 KB text payload per round (a worker's update frame) is written to every client:

- `product`: `SocketWriter.write_payload` (one ASGI message per payload, shared) into the
  protocol's send, which writes the frame's bytes built once per payload;
- `coroutine`: the same, without the protocol's synchronous `send_now` (the writer creates and
  steps the protocol's `send` coroutine per client: the path before `send_now`);
- `uvicorn`: `SocketWriter.write` of a new message dict per client into uvicorn's own
  `WebSocketsSansIOProtocol.send` (encode, `Frame`, serialize, join per client): the path
  before this change.

Prints the CPU (process time) per client frame of each, and their ratios (last line: JSON).
One process, one machine, interleaved rounds: the ratios hold on a shared machine where
absolute times do not.
Run: `.venv/bin/python bench/frame_cost.py [--clients 2000] [--rounds 100]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import socket
import statistics
import sys
import time
import types
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.fanout import raise_fd_limit  # noqa: E402


class _Discard(asyncio.Protocol):
    """A client that upgrades and then ignores everything it receives."""

    def __init__(self, port: int, opened: asyncio.Future[None]) -> None:
        self._port, self._opened = port, opened

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.write(  # type: ignore[attr-defined]
            f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{self._port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )

    def data_received(self, data: bytes) -> None:
        if not self._opened.done():
            self._opened.set_result(None)


async def _clients(port: int, count: int, ready: Any, stop: Any) -> None:
    loop = asyncio.get_running_loop()
    slots = asyncio.Semaphore(100)
    transports = []

    async def one() -> None:
        async with slots:
            opened = loop.create_future()
            transport, _ = await loop.create_connection(
                lambda: _Discard(port, opened), "127.0.0.1", port
            )
            await opened
            transports.append(transport)

    await asyncio.gather(*(one() for _ in range(count)))
    ready.set()
    await loop.run_in_executor(None, stop.wait)
    for transport in transports:
        transport.close()


def client_process(port: int, count: int, ready: Any, stop: Any) -> None:
    """The clients (a separate process)."""
    import uvloop

    raise_fd_limit()
    uvloop.run(_clients(port, count, ready, stop))


async def measure(args: argparse.Namespace) -> None:
    """Serve, connect the clients, and time the rounds."""
    import uvicorn
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

    from realtime.writer import SocketWriter
    from realtime.ws_close import PausedCloseProtocol, send_now_of

    protocols: list[PausedCloseProtocol] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        protocols.append(send.__self__)
        while (await receive())["type"] != "websocket.disconnect":
            pass

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, ws=PausedCloseProtocol, lifespan="off", log_config=None
    )
    server = uvicorn.Server(config)
    serving = asyncio.get_running_loop().create_task(server.serve())
    while not server.started:  # noqa: ASYNC110  (uvicorn sets a flag, no event)
        await asyncio.sleep(0.05)
    ctx = multiprocessing.get_context("spawn")
    ready, stop = ctx.Event(), ctx.Event()
    clients = ctx.Process(target=client_process, args=(port, args.clients, ready, stop))
    clients.start()
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, ready.wait)
    while len(protocols) < args.clients:  # noqa: ASYNC110
        await asyncio.sleep(0.05)

    def writers(send_of: Any, *, now: bool = False) -> list[SocketWriter]:
        return [
            SocketWriter(
                send_of(p),
                limit=64,
                on_overflow_drained=lambda: None,
                send_now=send_now_of(p.send) if now else None,
            )
            for p in protocols
        ]

    paths = {
        "product": writers(lambda p: p.send, now=True),
        "coroutine": writers(lambda p: p.send),
        "uvicorn": writers(lambda p: types.MethodType(WebSocketsSansIOProtocol.send, p)),
    }
    body = "x" * 900
    costs: dict[str, list[float]] = {name: [] for name in paths}
    names = list(paths)
    for round_ in range(args.rounds):
        for name in names[round_ % 3 :] + names[: round_ % 3]:
            payload = f'{{"type":"update","seq":{round_},"body":"{body}"}}'  # a fresh object
            started = time.process_time()
            if name == "uvicorn":
                for writer in paths[name]:
                    writer.write({"type": "websocket.send", "text": payload})
            else:
                for writer in paths[name]:
                    writer.write_payload(payload)
            costs[name].append((time.process_time() - started) / args.clients)
            await asyncio.sleep(0.02)  # let the sockets drain
    backlogged = sum(w.backlogged for group in paths.values() for w in group)
    stop.set()
    clients.join(timeout=30)
    server.should_exit = True
    await serving
    load = os.getloadavg()
    us = {name: statistics.median(costs[name]) * 1e6 for name in paths}
    print(
        f"clients={args.clients} rounds={args.rounds} payload={len(payload)} B "
        f"load average {load[0]:.2f}; backlogged writers at the end: {backlogged}\n"
        f"CPU per client frame (median of rounds): product (send_now) {us['product']:.2f} us, "
        f"product's send coroutine {us['coroutine']:.2f} us, "
        f"uvicorn's send {us['uvicorn']:.2f} us"
    )
    figures = {f"{name}_us_per_client_frame": round(value, 3) for name, value in us.items()}
    figures["ratio_product_to_coroutine"] = round(us["product"] / us["coroutine"], 3)
    figures["ratio_product_to_uvicorn"] = round(us["product"] / us["uvicorn"], 3)
    print(json.dumps({"clients": args.clients, "rounds": args.rounds, **figures}))


def main() -> None:
    """Parse the arguments, then measure in a uvloop loop."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=100)
    args = parser.parse_args()
    raise_fd_limit()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard_project.settings")
    os.environ.setdefault("DASHBOARD_SECRET_KEY", "bench")
    import uvloop

    uvloop.run(measure(args))


if __name__ == "__main__":
    main()
