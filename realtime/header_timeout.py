"""uvicorn's HTTP protocol with a deadline on each request head, against slow clients.

uvicorn (0.54, httptools) arms no timer between a connection's accept and the end of its
request head: a client that connects and sends nothing, or half a head, or a byte now and
then (slowloris), holds a connection, a file descriptor and a slot of `limit_concurrency`
for as long as it likes. Here every request head — the first on a connection, and each one
after a keep-alive response — must be complete within `timeout_s` of its start (the accept,
or the head's first byte), or the connection is closed. A WebSocket handshake is such a head.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class HeaderTimeoutProtocol(HttpToolsProtocol):
    """HttpToolsProtocol that closes a connection whose request head is overdue."""

    timeout_s: ClassVar[float] = 10.0
    _head_timer: asyncio.TimerHandle | None = None

    @classmethod
    def with_timeout(cls, timeout_s: float) -> type[HeaderTimeoutProtocol]:
        """The protocol class uvicorn should use, with `timeout_s` per request head."""
        return type(cls.__name__, (cls,), {"timeout_s": timeout_s})

    def connection_made(self, transport: Any) -> None:
        """Called when a connection is accepted: its first head is due from now."""
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        """Called at a request head's first byte: a keep-alive connection's next head is due."""
        super().on_message_begin()
        if self._head_timer is None:
            self._arm()

    def on_headers_complete(self) -> None:
        """Called when the head is complete: the request (or WebSocket) goes on untimed here."""
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        """Called when the connection is gone, whoever closed it."""
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._head_timer = self.loop.call_later(self.timeout_s, self._overdue)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _overdue(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            self.transport.close()
