"""A `/ws` client that follows a dashboard server: connect, resume, apply, reconnect.

    async with DeskClient("ws://127.0.0.1:8086/ws", token="dsk_...") as desk:
        async for state in desk.states():
            print(state.seq, state.data["market_data"]["BTCUSDT"]["last_price"])

It keeps the state by applying updates (`Follower`), asks for a `refresh` on a gap, and after any
disconnect reconnects with capped, jittered backoff — resuming from its seq when it can. A
`shutdown` frame (the server is going away) makes it reconnect after the server's
`reconnect_after_ms` instead of backing off.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import msgpack
import orjson
import websockets

from dashboard_client.follower import Action, FeedHealth, Follower, Notice, Outcome

RECONNECT_FIRST_S = 0.25  # backoff: 0.25 s doubling to `reconnect_max_s`, each delay jittered
# The largest frame taken from the server. websockets' default (1 MiB) is less than a big desk's
# snapshot (10,000 symbols with extra fields run to several MiB); the server is the one the user
# chose to follow, so the bound is only against a runaway, not a tight budget.
MAX_FRAME_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class DeskState:
    """One moment of the followed state, as `states()` yields it.

    `data` holds a copy of each channel's container; the records inside are shared with the
    client but never changed by it (an update replaces a record), so a `DeskState` stays as it
    was however long it is kept.
    """

    data: dict[str, Any]
    seq: int
    epoch: str | None
    connection: str  # "connecting", "live", or why it is reconnecting
    outcome: Outcome  # live, recovered or resynced
    reason: str | None  # why the last resync was one
    feed: FeedHealth | None  # the last status frame
    notice: Notice | None  # the last staff notice
    updates: int  # updates applied since the client started
    gaps: int  # gaps seen (each answered by a refresh)


class DeskClient:
    """Follows one server until stopped; `states()` yields the state after each change."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        client_type: Literal["web", "tui"] | None = None,
        fmt: Literal["json", "msgpack"] | None = None,
        channels: Iterable[str] | None = None,
        reconnect_max_s: float = 5.0,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self.url = url
        self.token = token
        self._query = {
            key: value
            for key, value in (
                ("type", client_type),
                ("format", fmt),
                ("channels", None if channels is None else ",".join(channels)),
            )
            if value is not None
        }
        self.reconnect_max_s = reconnect_max_s
        self.follower = Follower()
        self.connection = "connecting"
        self.last_message_at = 0.0  # time.monotonic() of the last frame
        self.connects = 0
        self._on_change = on_change
        self._ws: Any = None
        self._version = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # --- following --------------------------------------------------------------------------

    def connect_url(self) -> str:
        """The URL of the next connection: the query asked for, plus a resume if possible."""
        parts = urlsplit(self.url)
        query = dict(parse_qsl(parts.query))
        query.update(self._query)
        for key in ("since", "epoch"):
            query.pop(key, None)
        query.update(self.follower.resume_query())
        return urlunsplit(parts._replace(query=urlencode(query)))

    async def run(self) -> None:
        """Connect, follow, and reconnect until cancelled."""
        failures = 0
        while True:
            headers = {"Authorization": f"Bearer {self.token}"} if self.token else None
            url = self.connect_url()
            self.follower.connecting(resume=bool(self.follower.resume_query()))
            try:
                async with websockets.connect(
                    url, additional_headers=headers, open_timeout=10, max_size=MAX_FRAME_BYTES
                ) as ws:
                    self._ws = ws
                    self.connects += 1
                    self.connection = "live"
                    failures = 0
                    self._changed()
                    await self._follow(ws)
                self.connection = (
                    "server going away; reconnecting"
                    if self.follower.reconnect_after_ms is not None
                    else f"closed ({ws.close_code}); reconnecting"
                )
            except websockets.ConnectionClosed as exc:
                # 4401/4403/4429 carry the server's reason (a bad token, a channel not allowed)
                received = exc.rcvd
                reason = f": {received.reason}" if received is not None and received.reason else ""
                code = received.code if received is not None else "no close frame"
                self.connection = f"closed ({code}{reason}); reconnecting"
            except (OSError, websockets.WebSocketException, TimeoutError) as exc:
                self.connection = f"reconnecting ({type(exc).__name__})"
            finally:
                self._ws = None
            self._changed()
            after_ms = self.follower.reconnect_after_ms
            if after_ms is not None:  # the server said when: no backoff
                await asyncio.sleep(after_ms / 1000)
                continue
            base = min(self.reconnect_max_s, RECONNECT_FIRST_S * 2**failures)
            failures += 1
            await asyncio.sleep(base / 2 + random.random() * base / 2)

    async def _follow(self, ws: Any) -> None:
        async for message in ws:
            self.last_message_at = time.monotonic()
            frame = orjson.loads(message) if isinstance(message, str) else msgpack.unpackb(message)
            action = self.follower.receive(frame)
            if action is Action.REFRESH:
                await self.refresh()
            elif action is Action.RECONNECT:
                self.connection = "server going away; reconnecting"
                await ws.close()
                return
            self._changed()

    async def refresh(self) -> None:
        """Ask the server for a fresh snapshot."""
        if self._ws is not None:
            with contextlib.suppress(websockets.WebSocketException):
                await self._ws.send('{"type":"refresh"}')

    # --- reading ----------------------------------------------------------------------------

    def state(self) -> DeskState:
        """The state now (channel containers copied: see DeskState)."""
        f = self.follower
        data = {
            name: value.copy() if isinstance(value, dict | list) else value
            for name, value in (f.data or {}).items()
        }
        return DeskState(
            data=data,
            seq=f.seq,
            epoch=f.epoch,
            connection=self.connection,
            outcome=f.outcome,
            reason=f.reason,
            feed=f.feed,
            notice=f.notice,
            updates=f.updates,
            gaps=f.gaps,
        )

    async def states(self) -> AsyncIterator[DeskState]:
        """The state after each change; a slow reader gets the latest, not a backlog."""
        seen = -1
        while True:
            if self._version == seen:
                await self._wake.wait()
                continue
            seen = self._version
            yield self.state()

    def _changed(self) -> None:
        self._version += 1
        self._wake.set()
        self._wake = asyncio.Event()
        self._on_change()

    # --- as a context manager ---------------------------------------------------------------

    async def __aenter__(self) -> DeskClient:
        """Start following in a task of its own."""
        self._task = asyncio.get_running_loop().create_task(self.run())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Stop following and close the connection."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
