"""The web server's frames: a payload sent to many clients is written as the same bytes to each.

The real uvicorn server with the product's WebSocket protocol (`realtime.ws_close`) on loopback,
an ASGI app that sends what the test asks, and `websockets` clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn
import websockets
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory

from realtime import ws_close
from realtime.ws_close import PausedCloseProtocol

pytestmark = pytest.mark.integration


class Broadcaster:
    """An ASGI app: accepts every WebSocket and sends it whatever `broadcast` is given."""

    def __init__(self) -> None:
        self.sends: list[Any] = []
        self.received: list[str | bytes] = []
        self.disconnects = 0
        self.joined = asyncio.Condition()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "websocket"
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        async with self.joined:
            self.sends.append(send)
            self.joined.notify_all()
        while (message := await receive())["type"] != "websocket.disconnect":
            self.received.append(message.get("text") or message.get("bytes"))
        self.disconnects += 1

    async def broadcast(self, message: dict[str, Any]) -> None:
        for send in self.sends:
            await send(message)


@contextlib.asynccontextmanager
async def serving(app: Broadcaster, *, deflate: bool = False) -> AsyncIterator[uvicorn.Server]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        ws=PausedCloseProtocol,
        ws_per_message_deflate=deflate,
        lifespan="off",
        log_config=None,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(10):
            while not server.started:  # noqa: ASYNC110  (uvicorn sets a flag, no event)
                await asyncio.sleep(0.01)
        yield server
    finally:
        server.should_exit = True
        await task


async def joined(app: Broadcaster, count: int) -> None:
    async with asyncio.timeout(10), app.joined:
        await app.joined.wait_for(lambda: len(app.sends) >= count)


async def test_one_payload_object_is_encoded_once_and_reaches_every_client() -> None:
    # given three connected clients
    app = Broadcaster()
    async with serving(app) as server:
        url = f"ws://127.0.0.1:{server.config.port}/"
        async with (
            websockets.connect(url, compression=None) as a,
            websockets.connect(url, compression=None) as b,
            websockets.connect(url, compression=None) as c,
        ):
            await joined(app, 3)
            # when one text payload, a binary one, then another text one are broadcast
            text = '{"type":"update","seq":7,"x":"\u00e9t\u00e9"}'
            await app.broadcast({"type": "websocket.send", "text": text})
            wire = ws_close._TEXT.wire
            await app.broadcast({"type": "websocket.send", "bytes": b"\x81\x00binary"})
            await app.broadcast({"type": "websocket.send", "text": "second" * 50})
            # then each client gets each frame intact, of its kind
            for client in (a, b, c):
                async with asyncio.timeout(10):
                    assert await client.recv() == text
                    assert await client.recv() == b"\x81\x00binary"
                    assert await client.recv() == "second" * 50
            # and the text's frame was built once: its bytes are the unmasked final frame
            assert wire == bytes([0x81, len(text.encode())]) + text.encode()


async def test_the_writer_of_a_uvicorn_connection_writes_without_a_send_coroutine() -> None:
    from realtime.writer import SocketWriter

    # given a client connected to the product's protocol, and a writer on its send
    app = Broadcaster()
    async with serving(app) as server:
        url = f"ws://127.0.0.1:{server.config.port}/"
        async with websockets.connect(url, compression=None) as client:
            await joined(app, 1)
            (send,) = app.sends
            send_now = ws_close.send_now_of(send)
            assert send_now is not None
            calls: list[Any] = []

            async def counted(message: dict[str, Any]) -> None:
                calls.append(message)
                await send(message)

            writer = SocketWriter(
                counted, limit=4, on_overflow_drained=lambda: None, send_now=send_now
            )
            # when two frames are written
            writer.write_payload("one")
            writer.write_payload(b"two")
            # then the client has both, and the ASGI send was never called
            async with asyncio.timeout(10):
                assert await client.recv() == "one"
                assert await client.recv() == b"two"
            assert calls == []
            assert writer.sent == 2
            # and what is not a frame goes to the ASGI send: a close is never written as data
            assert not send_now({"type": "websocket.close", "code": 1000, "text": "x"})
    # and a send that is not this protocol's has no synchronous write
    assert ws_close.send_now_of(counted) is None


async def test_a_compressed_connection_gets_its_own_frames() -> None:
    # given a client that negotiated per-message deflate, and one that did not
    app = Broadcaster()
    async with serving(app, deflate=True) as server:
        url = f"ws://127.0.0.1:{server.config.port}/"
        deflating = [ClientPerMessageDeflateFactory()]
        async with (
            websockets.connect(url, extensions=deflating, compression=None) as compressed,
            websockets.connect(url, compression=None) as plain,
        ):
            await joined(app, 2)
            # when one payload is broadcast
            text = "tick " * 400
            await app.broadcast({"type": "websocket.send", "text": text})
            # then both read it (the compressed connection's frame is its own, deflated)
            async with asyncio.timeout(10):
                assert await compressed.recv() == text
                assert await plain.recv() == text


async def test_an_open_connection_does_not_keep_its_handshake() -> None:
    # given a connected client
    app = Broadcaster()
    async with (
        serving(app) as server,
        websockets.connect(f"ws://127.0.0.1:{server.config.port}/") as client,
    ):
        await joined(app, 1)
        # then its protocol holds neither the upgrade request nor the response to it
        (connection,) = server.server_state.connections
        assert isinstance(connection, PausedCloseProtocol)
        assert not hasattr(connection, "request")
        assert not hasattr(connection, "response")
        # nor the request's headers, which websockets' parser (a generator that parsed the
        # request and now parses frames) still references
        request = connection.conn.parser.gi_frame.f_locals["request"]
        assert request.method == "GET"
        assert not request.headers
        # and the connection works as before
        await app.broadcast({"type": "websocket.send", "text": "still here"})
        async with asyncio.timeout(10):
            assert await client.recv() == "still here"


async def test_client_messages_reach_the_app_in_order_and_then_the_disconnect() -> None:
    # given a connected client (the protocol's receive queue is its own, not asyncio.Queue)
    app = Broadcaster()
    async with serving(app) as server:
        async with websockets.connect(f"ws://127.0.0.1:{server.config.port}/") as client:
            await joined(app, 1)
            # when it sends messages back to back, text and binary, and closes
            for n in range(20):
                await client.send(f"m{n}" if n % 2 else f"m{n}".encode())
        # then the app received every one in order, then one disconnect
        async with asyncio.timeout(10):
            while app.disconnects == 0:  # noqa: ASYNC110  (the app's counter, no event)
                await asyncio.sleep(0.01)
        assert app.received == [f"m{n}" if n % 2 else f"m{n}".encode() for n in range(20)]
        assert app.disconnects == 1
