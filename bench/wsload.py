"""A lean WebSocket load client for benchmarks: thousands of connections in one process.

A general client (the `websockets` library) costs ~50 us per received frame in Python, so one
load-generator process saturates its core near 20,000 frames/s and its own queueing then
dominates the latencies measured. This one does only what a benchmark needs: the RFC 6455
handshake, and parsing of unmasked server frames with a running byte scan; pings get pongs.
Not for production use — the product's clients are browsers, the terminal client and tests
(which use `websockets`).
"""

from __future__ import annotations

import asyncio
import base64
import os
import struct
from collections.abc import Callable, Sequence
from typing import cast

Handler = Callable[[int, bytes], None]  # (opcode, payload)


class LeanClient(asyncio.Protocol):
    """One connection; calls `on_frame(opcode, payload)` for each data frame."""

    def __init__(
        self,
        host: str,
        port: int,
        path: str,
        on_frame: Handler,
        headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        extra = "".join(f"{name}: {value}\r\n" for name, value in headers)
        self._request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}"
            f"\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
        ).encode()
        self._on_frame = on_frame
        self._buffer = bytearray()
        self._upgraded = False
        self.transport: asyncio.Transport | None = None
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Send the upgrade request."""
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(self._request)

    def data_received(self, data: bytes) -> None:
        """Parse the handshake response, then frames."""
        buffer = self._buffer
        buffer += data
        if not self._upgraded:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            if not buffer.startswith(b"HTTP/1.1 101"):
                self._fail(ConnectionError(bytes(buffer[:80]).decode("latin-1")))
                return
            del buffer[: end + 4]
            self._upgraded = True
            if not self.opened.done():  # cancelled by the caller's timeout: the 101 came late
                self.opened.set_result(None)
        offset = 0
        size = len(buffer)
        while size - offset >= 2:
            opcode = buffer[offset] & 0x0F
            length = buffer[offset + 1] & 0x7F
            header = 2
            if length == 126:
                if size - offset < 4:
                    break
                (length,) = struct.unpack_from("!H", buffer, offset + 2)
                header = 4
            elif length == 127:
                if size - offset < 10:
                    break
                (length,) = struct.unpack_from("!Q", buffer, offset + 2)
                header = 10
            if size - offset < header + length:
                break
            payload = bytes(buffer[offset + header : offset + header + length])
            offset += header + length
            if opcode == 0x9:  # ping: answer, masked as a client must
                self._send(0xA, payload)
            elif opcode == 0x8:
                code = struct.unpack_from("!H", payload)[0] if len(payload) >= 2 else 1005
                if not self.closed.done():
                    self.closed.set_result(code)
            else:
                self._on_frame(opcode, payload)
        if offset:
            del buffer[:offset]

    def connection_lost(self, exc: Exception | None) -> None:
        """Resolve the futures whoever waits on them."""
        self._fail(exc or ConnectionError("closed"))
        if not self.closed.done():
            self.closed.set_result(1006)

    def close(self) -> None:
        """Close the TCP connection (the benchmark does not need a closing handshake)."""
        if self.transport is not None:
            self.transport.close()

    def _send(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        assert len(payload) < 126
        if self.transport is not None:
            self.transport.write(bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + masked)

    def _fail(self, exc: Exception) -> None:
        if not self.opened.done():
            self.opened.set_exception(exc)


async def connect(
    host: str, port: int, path: str, on_frame: Handler, headers: Sequence[tuple[str, str]] = ()
) -> LeanClient:
    """Open one upgraded connection (`headers`: extra request headers, e.g. Authorization)."""
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_connection(
        lambda: LeanClient(host, port, path, on_frame, headers), host, port
    )
    await asyncio.wait_for(protocol.opened, timeout=60)
    return protocol
