"""SocketWriter: synchronous sends when the socket takes them, bounded backlog when it does not.

The ASGI `send` here is a real coroutine function gated by an asyncio.Event, as uvicorn's is
(`await self.writable.wait()` while the transport is paused).
"""

from __future__ import annotations

import asyncio
from typing import Any

from realtime.writer import TOTALS, SocketWriter


class GatedSend:
    """An ASGI send that completes at once while open and waits while closed."""

    def __init__(self) -> None:
        self.writable = asyncio.Event()
        self.writable.set()
        self.delivered: list[dict[str, Any]] = []

    async def __call__(self, message: dict[str, Any]) -> None:
        await self.writable.wait()
        self.delivered.append(message)


async def drain_done(writer: SocketWriter) -> None:
    """Step the loop until the writer's drain task has ended."""
    while writer.backlogged:  # noqa: ASYNC110  # stepping the loop, not waiting for readiness
        await asyncio.sleep(0)


def frame(n: int) -> dict[str, Any]:
    return {"type": "websocket.send", "text": str(n)}


async def test_writes_complete_synchronously_when_the_socket_takes_them() -> None:
    send = GatedSend()
    writer = SocketWriter(send, limit=4, on_overflow_drained=lambda: None)
    for n in range(3):
        writer.write(frame(n))
        assert send.delivered[-1] == frame(n)  # no await in between: done in write()
    assert writer.sent == 3
    assert not writer.backlogged


async def test_a_blocked_send_drains_in_order_later() -> None:
    send = GatedSend()
    writer = SocketWriter(send, limit=4, on_overflow_drained=lambda: None)
    send.writable.clear()
    for n in range(3):
        writer.write(frame(n))
    assert send.delivered == []
    assert writer.backlogged
    send.writable.set()
    await drain_done(writer)
    assert send.delivered == [frame(0), frame(1), frame(2)]
    assert writer.sent == 3


async def test_overflow_drops_the_backlog_and_asks_for_one_snapshot() -> None:
    send = GatedSend()
    drained: list[bool] = []
    writer = SocketWriter(send, limit=4, on_overflow_drained=lambda: drained.append(True))
    send.writable.clear()
    for n in range(100):
        writer.write(frame(n))
    assert writer.overflowed
    assert writer.dropped == 99 - 0  # all but the send in flight
    send.writable.set()
    await drain_done(writer)
    assert send.delivered == [frame(0)]  # the in-flight one; the stale backlog is gone
    assert drained == [True]  # the consumer sends a fresh snapshot now
    assert not writer.overflowed


async def test_close_cancels_a_pending_drain() -> None:
    send = GatedSend()
    writer = SocketWriter(send, limit=4, on_overflow_drained=lambda: None)
    send.writable.clear()
    writer.write(frame(1))
    writer.close()
    await asyncio.sleep(0)
    writer.write(frame(2))
    send.writable.set()
    await asyncio.sleep(0)
    assert send.delivered == []


async def test_a_failing_send_marks_the_writer_closed() -> None:
    async def broken(message: dict[str, Any]) -> None:
        raise OSError("connection reset")

    writer = SocketWriter(broken, limit=4, on_overflow_drained=lambda: None)
    writer.write(frame(1))
    assert writer.closed


async def test_process_totals_count_written_bytes_and_dropped_frames() -> None:
    before = (TOTALS.bytes, TOTALS.dropped)
    send = GatedSend()
    writer = SocketWriter(send, limit=2, on_overflow_drained=lambda: None)
    writer.write({"type": "websocket.send", "text": "abc"})  # 3 bytes
    writer.write({"type": "websocket.send", "text": "\u00e9t\u00e9"})  # 5 bytes in UTF-8
    writer.write({"type": "websocket.send", "bytes": b"\x00\x01"})  # 2 bytes
    send.writable.clear()
    writer.write({"type": "websocket.send", "bytes": b"1234"})  # in flight, written later
    writer.write(frame(1))  # queued, written later
    writer.write(frame(2))  # queued
    writer.write(frame(3))  # over the limit: the two queued and this one are dropped
    send.writable.set()
    await drain_done(writer)
    moved = (TOTALS.bytes - before[0], TOTALS.dropped - before[1])
    assert moved == (3 + 5 + 2 + 4, 3)
    assert writer.sent == 4


async def test_the_backlog_is_bounded_in_bytes_as_well_as_messages() -> None:
    # given a writer allowing many messages but only 10 KiB of them, on a stalled socket
    send = GatedSend()
    drained: list[bool] = []
    writer = SocketWriter(
        send, limit=1000, limit_bytes=10_240, on_overflow_drained=lambda: drained.append(True)
    )
    send.writable.clear()
    writer.write(frame(0))  # in flight
    # when frames of 4 KiB keep coming (three would pass 10 KiB)
    big = {"type": "websocket.send", "text": "x" * 4096}
    writer.write(big)
    writer.write(big)
    assert not writer.overflowed
    writer.write(big)
    # then the backlog is dropped, as on too many messages, and one snapshot follows the drain
    assert writer.overflowed
    assert writer.queued_bytes == 0
    send.writable.set()
    await drain_done(writer)
    assert send.delivered == [frame(0)]
    assert drained == [True]


async def test_stale_drops_what_is_queued_and_resyncs_after_the_drain() -> None:
    send = GatedSend()
    drained: list[bool] = []
    writer = SocketWriter(send, limit=100, on_overflow_drained=lambda: drained.append(True))
    send.writable.clear()
    for n in range(5):
        writer.write(frame(n))
    writer.stale()  # e.g. the client asked for a snapshot while its socket is stalled
    send.writable.set()
    await drain_done(writer)
    assert send.delivered == [frame(0)]
    assert drained == [True]


async def test_a_send_stalled_past_the_write_timeout_closes_the_writer() -> None:
    send = GatedSend()
    stalled = asyncio.Event()
    writer = SocketWriter(
        send,
        limit=4,
        on_overflow_drained=lambda: None,
        write_timeout_s=0.05,
        on_stalled=stalled.set,
    )
    send.writable.clear()  # the client stopped reading: flow control holds the send
    for n in range(3):
        writer.write(frame(n))
    assert writer.queued_bytes > 0
    await asyncio.wait_for(stalled.wait(), 2)
    # what it held is released: the queue, and the send in flight (cancelled)
    assert writer.closed
    assert writer.queued_bytes == 0
    await drain_done(writer)
    send.writable.set()
    writer.write(frame(9))
    await asyncio.sleep(0)
    assert send.delivered == []  # nothing more is written to it


class PacedSend:
    """An ASGI send that completes one message each time `release` is called."""

    def __init__(self) -> None:
        self.tokens = asyncio.Semaphore(0)
        self.delivered: list[dict[str, Any]] = []

    async def __call__(self, message: dict[str, Any]) -> None:
        await self.tokens.acquire()
        self.delivered.append(message)


async def test_a_slow_reader_whose_sends_progress_is_not_closed() -> None:
    # given a 0.5 s write timeout and a client that takes a frame every 0.1 s
    send = PacedSend()
    stalled: list[bool] = []
    writer = SocketWriter(
        send,
        limit=16,
        on_overflow_drained=lambda: None,
        write_timeout_s=0.5,
        on_stalled=lambda: stalled.append(True),
    )
    for n in range(10):
        writer.write(frame(n))
    # when the whole backlog takes twice the timeout to drain
    while writer.backlogged:
        send.tokens.release()
        await asyncio.sleep(0.1)
    # then it was written, in order, and the writer stays open (the timer went with the drain)
    assert send.delivered == [frame(n) for n in range(10)]
    await asyncio.sleep(0.6)
    assert stalled == []
    assert not writer.closed


async def test_without_a_write_timeout_a_stalled_send_waits() -> None:
    send = GatedSend()
    writer = SocketWriter(send, limit=4, on_overflow_drained=lambda: None)
    send.writable.clear()
    writer.write(frame(0))
    await asyncio.sleep(0.05)
    assert writer.backlogged
    assert not writer.closed
    send.writable.set()
    await drain_done(writer)
    assert send.delivered == [frame(0)]


async def test_one_payload_is_one_message_for_every_writer() -> None:
    # given two clients' writers, one of them backlogged
    sends = [GatedSend(), GatedSend()]
    fast, slow = (SocketWriter(s, limit=4, on_overflow_drained=lambda: None) for s in sends)
    sends[1].writable.clear()
    slow.write_payload("first")  # in flight
    before = TOTALS.bytes
    # when one text payload object and one binary payload object are written to both
    text, data = "caf\u00e9 update", b"\x82\x01"
    for writer in (fast, slow):
        writer.write_payload(text)
        writer.write_payload(data)
    sends[1].writable.set()
    await drain_done(slow)
    # then both sent the same ASGI message objects, of the payload's kind, sized in UTF-8
    assert sends[0].delivered == [
        {"type": "websocket.send", "text": text},
        {"type": "websocket.send", "bytes": data},
    ]
    assert sends[1].delivered[1:] == sends[0].delivered
    assert all(a is b for a, b in zip(sends[0].delivered, sends[1].delivered[1:], strict=True))
    assert slow.queued_bytes == 0
    assert TOTALS.bytes - before == 2 * (len(text.encode()) + len(data)) + len(b"first")


class SendNow:
    """A server's synchronous write: takes a frame while the socket is writable, else refuses."""

    def __init__(self, send: GatedSend) -> None:
        self.send = send
        self.written: list[dict[str, Any]] = []

    def __call__(self, message: dict[str, Any]) -> bool:
        if not self.send.writable.is_set():
            return False
        self.written.append(message)
        return True


async def test_a_servers_synchronous_write_is_used_first_and_the_send_when_it_refuses() -> None:
    send = GatedSend()
    now = SendNow(send)
    writer = SocketWriter(send, limit=4, on_overflow_drained=lambda: None, send_now=now)
    # a writable socket takes the frame with no send coroutine
    writer.write(frame(0))
    assert now.written == [frame(0)]
    assert send.delivered == []
    # a paused one: the send coroutine waits, and later frames queue behind it in order,
    # even once the socket could take them at once (no frame overtakes the drain)
    send.writable.clear()
    writer.write(frame(1))
    send.writable.set()
    writer.write(frame(2))
    assert now.written == [frame(0)]
    await drain_done(writer)
    assert send.delivered == [frame(1), frame(2)]
    writer.write(frame(3))
    assert now.written == [frame(0), frame(3)]
    assert writer.sent == 4
