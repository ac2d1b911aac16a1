"""uvicorn's WebSocket protocol, able to close a socket whose peer has stopped reading.

uvicorn (0.54, websockets-sansio) makes every ASGI send wait until the transport is writable,
a `websocket.close` too: while flow control holds a socket (the peer reads nothing, its
buffers are full) the close waits for as long as the peer likes, and so does everything the
connection holds — the kernel's send queue (up to `tcp_wmem`, 4 MiB), the transport's buffer,
the file descriptor, a slot of `limit_concurrency`. (`transport.close()`, as uvicorn's own
keepalive timeout uses it, waits for the buffer to flush first: no better.) Here a close while
the transport is paused aborts the connection instead: the close frame could only be queued
behind what the peer is not reading, so it is not sent; the connection is reset (SO_LINGER 0),
which frees the kernel's queue at once, and the application gets its `websocket.disconnect`.
The writer asks for such a close after `ws_write_timeout_s` without progress (realtime.writer).

It also writes a broadcast's frame as the same bytes to every client. uvicorn's send encodes the
text (a copy of the payload), builds a `Frame`, serializes it (another copy) into the
connection's buffer and joins that (a third) — per client, for a payload that is the same
object for all of them (the hub hands every client the worker's pre-encoded frame). A server's
frames are unmasked, so without a compression extension their bytes do not depend on the
connection: the bytes of the last text and the last binary payload are kept, and a send of the
same payload object writes them to the transport directly (design principle 7).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import Callable
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.frames import Frame, Opcode
from websockets.protocol import State

_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST, drops unsent data


class _Last:
    """The last payload of one kind written, and its frame's bytes."""

    __slots__ = ("payload", "wire")

    def __init__(self) -> None:
        self.payload: object = None  # held, so that its id is not reused while compared
        self.wire = b""


_TEXT, _BINARY = _Last(), _Last()


def _wire(last: _Last, opcode: Opcode, payload: Any) -> bytes:
    """The bytes of an unmasked, uncompressed, final frame of `payload` (kept for the next)."""
    if payload is last.payload:
        return last.wire
    data = payload.encode() if opcode is Opcode.TEXT else payload
    wire = Frame(opcode, data).serialize(mask=False, extensions=[])
    last.payload, last.wire = payload, wire
    return wire


class _Inbox:
    """uvicorn's receive queue (`put_nowait`, `get`, `empty`: all it calls) without
    `asyncio.Queue`'s three deques, ~2.3 KiB a connection for what is at most a few messages."""

    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: list[Any] = []
        self._waiter: asyncio.Future[None] | None = None

    def put_nowait(self, item: Any) -> None:
        self._items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def empty(self) -> bool:
        return not self._items

    async def get(self) -> Any:
        while not self._items:
            waiter = self._waiter
            if waiter is None or waiter.done():
                waiter = self._waiter = asyncio.get_running_loop().create_future()
            await waiter
        return self._items.pop(0)


class PausedCloseProtocol(WebSocketsSansIOProtocol):
    """WebSocketsSansIOProtocol whose `websocket.close` aborts a socket that cannot be written."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue = _Inbox()  # type: ignore[assignment]  # the calls uvicorn makes, no more

    def send_now(self, message: Any) -> bool:
        """Write a `websocket.send` at once, if the connection is open and writable and
        uncompressed, as bytes shared by every client; whether it was written (if not, `send`
        does what uvicorn's does). Synchronous: the writer calls it for every client of a
        broadcast, where creating and stepping a `send` coroutine per client cost more than
        the write (`send_now_of`)."""
        conn = self.conn
        if (
            message["type"] == "websocket.send"
            and self.writable.is_set()
            and not (self.close_sent or self.disconnected or conn.extensions or conn.writes)
            and conn.state is State.OPEN
            and not conn.expect_continuation_frame
            and self.handshake_complete
            and self.initial_response is None
        ):
            # What uvicorn's send does then (bytes before text), less the copies.
            data = message.get("bytes")
            if data is not None:
                self.transport.write(_wire(_BINARY, Opcode.BINARY, data))
                return True
            text = message.get("text")
            if text is not None:
                self.transport.write(_wire(_TEXT, Opcode.TEXT, text))
                return True
        return False

    async def send(self, message: Any) -> None:
        """The ASGI send: a close while writes are paused resets the connection at once; a
        frame on an open, writable connection is written as bytes shared by every client."""
        if self.send_now(message):
            return
        if (
            message["type"] == "websocket.close"
            and not self.writable.is_set()
            and self.handshake_complete
            and self.initial_response is None
            and not (self.close_sent or self.disconnected)
        ):
            self.queue.put_nowait(
                {
                    "type": "websocket.disconnect",
                    "code": message.get("code", 1000),
                    "reason": message.get("reason") or "",
                }
            )
            self.close_sent = True
            sock = self.transport.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
            self.transport.abort()
            return
        await super().send(message)
        if message["type"] == "websocket.accept" and self.handshake_complete:
            # uvicorn keeps the handshake's request and response (their headers, ~3 KiB) for
            # the connection's life and reads neither again: the scope has what the app needs.
            # websockets' parser (the generator that parsed the request, now parsing frames)
            # keeps the request too: its headers are emptied (~1.7 KiB), as nothing reads them.
            with contextlib.suppress(AttributeError):
                self.request.headers.clear()
                del self.request, self.response


def send_now_of(send: Any) -> Callable[[Any], bool] | None:
    """The synchronous write of the connection whose ASGI `send` this is, when its server is
    uvicorn with this protocol (the consumer's `send` is the protocol's bound method); None
    for any other server (daphne) or a test's communicator."""
    protocol = getattr(send, "__self__", None)
    return protocol.send_now if isinstance(protocol, PausedCloseProtocol) else None
