"""A `/ws` client that keeps the dashboard state: snapshot, then updates applied in order.

It speaks the protocol as any client must (contract section 4): a gap in `seq` (an update whose
base it cannot know, or a change that does not apply) asks for a `refresh`; a lost connection
reconnects with capped backoff and starts again from the snapshot the server sends.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgpack
import orjson
import websockets

from shared.core.changes import ChangeConflict, apply_changes

RECONNECT_MAX_S = 5.0  # reconnect backoff: 0.25 s doubling to 5 s
# The largest frame taken from the server. websockets' default (1 MiB) is less than a big desk's
# snapshot (10,000 symbols with extra fields run to several MiB); the server is the one the user
# chose to follow, so the bound is only against a runaway, not a tight budget.
MAX_FRAME_BYTES = 256 * 1024 * 1024


@dataclass
class ClientView:
    """What the UI shows: the state, its seq, the connection status and freshness."""

    state: dict[str, Any] = field(default_factory=dict)
    seq: int = 0
    status: str = "connecting"
    last_message_at: float = 0.0
    updates: int = 0
    resyncs: int = 0
    notice: Notice | None = None  # the last staff notice (server-sent; shown as literal text)


@dataclass(frozen=True)
class Notice:
    """A staff notice frame: `info` or `warning`, and one line of plain text."""

    level: str
    text: str


class DashboardClient:
    """Follows one server; calls `on_change()` after every frame it applied."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self.url = url
        self.token = token
        self.view = ClientView()
        self._on_change = on_change
        self._ws: Any = None

    async def run(self) -> None:
        """Connect, follow, and reconnect until cancelled."""
        delay = 0.25
        while True:
            headers = {"Authorization": f"Bearer {self.token}"} if self.token else None
            try:
                async with websockets.connect(
                    self.url,
                    additional_headers=headers,
                    open_timeout=10,
                    max_size=MAX_FRAME_BYTES,
                ) as ws:
                    self._ws = ws
                    self.view.status = "live"
                    delay = 0.25
                    async for message in ws:
                        await self._handle(message)
                self.view.status = f"closed ({ws.close_code}); reconnecting"
            except websockets.ConnectionClosed as exc:
                # 4401/4403/4429 carry the server's reason (a bad token, a channel not allowed)
                received = exc.rcvd
                reason = f": {received.reason}" if received is not None and received.reason else ""
                code = received.code if received is not None else "no close frame"
                self.view.status = f"closed ({code}{reason}); reconnecting"
            except (OSError, websockets.WebSocketException, TimeoutError) as exc:
                self.view.status = f"reconnecting ({type(exc).__name__})"
            finally:
                self._ws = None
            self._on_change()
            await asyncio.sleep(delay)
            delay = min(RECONNECT_MAX_S, delay * 2)

    async def refresh(self) -> None:
        """Ask the server for a fresh snapshot."""
        if self._ws is not None:
            with contextlib.suppress(websockets.WebSocketException):
                await self._ws.send('{"type":"refresh"}')

    async def _handle(self, message: str | bytes) -> None:
        frame = orjson.loads(message) if isinstance(message, str) else msgpack.unpackb(message)
        kind = frame.get("type")
        view = self.view
        view.last_message_at = time.monotonic()
        if kind == "snapshot":
            view.state = copy.deepcopy(frame["data"])
            view.seq = frame["seq"]
        elif kind == "update":
            if frame["seq"] <= view.seq:
                return
            try:
                apply_changes(view.state, frame["changes"])
            except ChangeConflict:
                view.resyncs += 1
                await self.refresh()
                return
            view.seq = frame["seq"]
            view.updates += 1
        elif kind == "notice":
            view.notice = Notice(str(frame.get("level")), str(frame.get("text")))
        self._on_change()
