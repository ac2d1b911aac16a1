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
"""

from __future__ import annotations

import contextlib
import socket
import struct
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST, drops unsent data


class PausedCloseProtocol(WebSocketsSansIOProtocol):
    """WebSocketsSansIOProtocol whose `websocket.close` aborts a socket that cannot be written."""

    async def send(self, message: Any) -> None:
        """The ASGI send: a close while writes are paused resets the connection at once."""
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
