"""Writing frames to one socket without letting a slow client hold up the others.

The hub writes each update to every client in one loop. A write steps the server's ASGI `send`
coroutine once, synchronously: on a socket that can take the bytes it finishes right there, with
no task switch (design principle 7: a task per send doubled the per-client cost). If it cannot
finish (the server is applying flow control to a slow client) the started send moves to a drain
task, and later frames wait in a queue bounded in messages and in bytes (a few snapshots of a
big desk weigh more than hundreds of updates). When the queue overflows, the queued updates
are dropped and the client is marked for one fresh snapshot once the drain completes — so a
stalled client costs the server a bounded amount of memory, never a growing backlog
(contract section 4, "Slow clients"). A write that has not completed for `write_timeout_s` (the
client has stopped reading: `ws_write_timeout_s`) ends the writer: its queue is dropped, the
stalled send cancelled, and `on_stalled` is called for the connection to be closed.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Generator
from dataclasses import dataclass
from typing import Any, cast

from realtime.protocol import size_of

log = logging.getLogger(__name__)

AsgiMessage = dict[str, Any]
Send = Callable[[AsgiMessage], Awaitable[None]]


@dataclass
class WriteTotals:
    """Every writer's bytes written and frames dropped, process-wide (frames written are the
    messages_sent metric, counted once per broadcast rather than per socket).

    Plain integers, not Prometheus counters: they grow per client per frame, where a counter
    step (a lock) would cost several times more; the stats line (`realtime.stats`) reads them.
    """

    bytes: int = 0
    dropped: int = 0


TOTALS = WriteTotals()


class SocketWriter:
    """Sends ASGI messages for one connection, in order, with bounded buffering."""

    # One per connection: slots and a queue made only when a write has to wait keep an idle
    # client's writer at ~0.2 KiB (an instance dict and an empty deque were ~1.5 KiB).
    __slots__ = (
        "_deadline",
        "_drain",
        "_limit",
        "_limit_bytes",
        "_on_overflow_drained",
        "_on_stalled",
        "_progress_at",
        "_queue",
        "_send",
        "_send_now",
        "_write_timeout_s",
        "closed",
        "dropped",
        "overflowed",
        "queued_bytes",
        "sent",
    )

    def __init__(
        self,
        send: Send,
        *,
        limit: int,
        limit_bytes: int = 1 << 62,
        on_overflow_drained: Callable[[], None],
        write_timeout_s: float | None = None,
        on_stalled: Callable[[], None] = lambda: None,
        send_now: Callable[[AsgiMessage], bool] | None = None,
    ) -> None:
        self._send = send
        # The server's synchronous write, when it has one (realtime.ws_close.send_now_of):
        # tried first, so a frame a writable socket takes costs no coroutine.
        self._send_now = send_now
        self._limit = limit
        self._limit_bytes = limit_bytes
        self._queue: deque[AsgiMessage] | None = None  # while a drain is in progress
        self.queued_bytes = 0
        self._drain: asyncio.Task[None] | None = None
        self._on_overflow_drained = on_overflow_drained
        self._write_timeout_s = write_timeout_s
        self._on_stalled = on_stalled
        self._deadline: asyncio.TimerHandle | None = None
        self._progress_at = 0.0  # when the drain last completed a send (loop time)
        self.overflowed = False
        self.closed = False
        self.sent = 0
        self.dropped = 0

    @property
    def backlogged(self) -> bool:
        """Whether earlier frames are still being written (a slow or stalled client)."""
        return self._drain is not None

    def write_payload(self, payload: str | bytes) -> None:
        """Write one text (`str`) or binary frame. A broadcast hands every client the same
        payload object: its ASGI message (and size) is built once and shared by all of them."""
        last = _LAST_TEXT if payload.__class__ is str else _LAST_BYTES
        if payload is not last.payload:
            last.hold(payload)
        self.write(last.message, last.size)

    def write(self, message: AsgiMessage, size: int | None = None) -> None:
        """Send `message` (of `size` payload bytes, if known) now if the socket takes it, else
        queue it (bounded)."""
        if self.closed:
            return
        if self._drain is not None:
            if self.overflowed:
                self.dropped += 1
                TOTALS.dropped += 1
                return
            if size is None:
                size = _size(message)
            queue = self._queue
            if queue is None:
                queue = self._queue = deque()
            if len(queue) >= self._limit or self.queued_bytes + size > self._limit_bytes:
                self.dropped += 1
                TOTALS.dropped += 1
                self.stale()
                return
            queue.append(message)
            self.queued_bytes += size
            return
        send_now = self._send_now
        if send_now is not None and send_now(message):
            self.sent += 1
            TOTALS.bytes += _size(message) if size is None else size
            return
        # ASGI servers' send callables are coroutine functions (daphne, uvicorn, Channels'
        # wrappers), so the awaitable can be stepped by hand.
        coroutine = cast(Coroutine[Any, Any, None], self._send(message))
        try:
            yielded = coroutine.send(None)
        except StopIteration:  # inline, not a method call: this runs per client per frame
            self.sent += 1
            TOTALS.bytes += _size(message) if size is None else size
            return
        except Exception:  # the connection is gone; the consumer's disconnect handles it
            self.closed = True
            return
        loop = asyncio.get_running_loop()
        self._drain = loop.create_task(self._finish(coroutine, yielded, message))
        if self._write_timeout_s is not None:
            # One timer per drain, not per send: each completed send moves `_progress_at`,
            # and the timer re-arms itself for what is left (a slow reader is not stalled).
            self._progress_at = loop.time()
            self._deadline = loop.call_later(self._write_timeout_s, self._check_stalled)

    def stale(self) -> None:
        """Drop what is queued; once the drain completes, `on_overflow_drained` is called.

        The slow-client rule: what is queued for a stalled socket is replaced by one fresh
        snapshot when it can write again. No-op unless a drain is in progress.
        """
        if self._drain is None:
            return
        if self._queue is not None:
            self.dropped += len(self._queue)
            TOTALS.dropped += len(self._queue)
            self._queue = None
        self.queued_bytes = 0
        self.overflowed = True

    def _count(self, message: AsgiMessage) -> None:
        """Called when the drain wrote a frame."""
        self.sent += 1
        TOTALS.bytes += _size(message)
        self._progress_at = asyncio.get_running_loop().time()

    def _check_stalled(self) -> None:
        """The write timer: close if no send has completed for `write_timeout_s`."""
        self._deadline = None
        if self._drain is None or self.closed or self._write_timeout_s is None:
            return
        loop = asyncio.get_running_loop()
        left = self._progress_at + self._write_timeout_s - loop.time()
        if left > 0:
            self._deadline = loop.call_later(left, self._check_stalled)
            return
        self.close()
        self._on_stalled()

    async def _finish(
        self, coroutine: Coroutine[Any, Any, None], yielded: Any, first: AsgiMessage
    ) -> None:
        try:
            await _Resume(coroutine, yielded)
            self._count(first)
            while self._queue and not self.closed:
                message = self._queue.popleft()
                self.queued_bytes -= _size(message)
                await self._send(message)
                self._count(message)
        except Exception:  # a send on a closed socket: nothing left to do
            self.closed = True
            self.queued_bytes = 0
            return
        finally:
            self._drain = None
            self._queue = None
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None
        if self.overflowed:
            self.overflowed = False
            self._on_overflow_drained()

    def close(self) -> None:
        """Stop writing; a drain in progress is cancelled."""
        self.closed = True
        self._queue = None
        self.queued_bytes = 0
        if self._drain is not None:
            self._drain.cancel()
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None


class _LastMessage:
    """The ASGI message of the last payload of one kind written (`SocketWriter.write_payload`)."""

    __slots__ = ("message", "payload", "size")

    def __init__(self) -> None:
        self.payload: str | bytes | None = None  # held, so its id is not reused while compared
        self.message: AsgiMessage = {}
        self.size = 0

    def hold(self, payload: str | bytes) -> None:
        key = "text" if isinstance(payload, str) else "bytes"
        self.payload, self.message = payload, {"type": "websocket.send", key: payload}
        self.size = size_of(payload)


_LAST_TEXT, _LAST_BYTES = _LastMessage(), _LastMessage()


def _size(message: AsgiMessage) -> int:
    """A frame's payload size in bytes (UTF-8 for text; `isascii` is a flag check in CPython)."""
    text = message.get("text")
    return size_of(text if text is not None else message.get("bytes") or b"")


class _Resume:
    """An awaitable that continues a coroutine whose first step was taken by hand."""

    __slots__ = ("_coroutine", "_yielded")

    def __init__(self, coroutine: Coroutine[Any, Any, None], yielded: Any) -> None:
        self._coroutine = coroutine
        self._yielded = yielded

    def __await__(self) -> Generator[Any, Any, None]:
        coroutine, yielded = self._coroutine, self._yielded
        while True:
            try:
                sent = yield yielded  # the running task waits on what the send waits on
            except GeneratorExit:
                coroutine.close()
                raise
            except BaseException as exc:  # cancellation, passed on to the send
                try:
                    yielded = coroutine.throw(exc)
                except StopIteration:
                    return
            else:
                try:
                    yielded = coroutine.send(sent)
                except StopIteration:
                    return
