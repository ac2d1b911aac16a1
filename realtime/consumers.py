"""The `/ws` consumer: one per connection; it relays, it never polls or diffs (STYLE).

One `DashboardConsumer` per socket: Channels' callbacks (`connect`, `receive`, `disconnect`),
the hub's `Member` interface (`deliver`, `catch_up`, `info`, `kick`, `notify`, `close_with`;
realtime/member.py) and the writing of its frames. What lives on its own has left: the
handshake's query and access (realtime/handshake.py), the connection's state
(realtime/connection_state.py), refresh merging (realtime/refresh.py) and the resume answer
(realtime/resume_answer.py).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import uuid
from collections.abc import Mapping
from typing import Any

import msgpack
from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from access import gate
from access.gate import AccessLimits, Admission, Refusal
from access.metrics import limit_hit, refused
from access.ratelimit import EventWindow, TokenBucket
from realtime import clientlog, handshake, metrics, protocol
from realtime.close_codes import CLOSE_KICKED, CLOSE_POLICY, CLOSE_TOO_LARGE, CLOSE_TOO_MANY
from realtime.connection_state import ConnectionState
from realtime.hub import Hub, get_hub
from realtime.presence import ClientInfo, describe_subscription, identity
from realtime.protocol import (
    Continuity,
    ErrorCode,
    Format,
    ProtocolError,
    ResumeRequest,
    Subscription,
)
from realtime.refresh import RefreshMerger
from realtime.resume import Refused
from realtime.writer import SocketWriter
from realtime.ws_close import send_now_of
from shared.clock import rfc3339_now
from shared.events import StateUpdate

log = logging.getLogger(__name__)

_ids = itertools.count(1)


class DashboardConsumer(AsyncWebsocketConsumer):  # type: ignore[misc]  # channels is untyped
    """A dashboard connection: snapshot, then the updates of its cadence it subscribes to."""

    hub: Hub
    writer: SocketWriter
    continuity: Continuity
    # The seq of the last snapshot or update frame this client was sent: what a narrowed
    # update's base_seq is (the client has seen nothing between it and the update's seq).
    sent_seq: int
    fmt: Format
    cadence: str
    client_id: str
    # Where the connection is in its life; moved only by ConnectionState.to (raises on a move
    # the table does not allow). Channels builds one consumer per connection.
    state: ConnectionState = ConnectionState.CONNECTING
    admission: Admission | None = None  # what access.gate admitted; its limit slot until closed
    _closing: asyncio.Task[None] | None = None  # the close of a client that stopped reading
    limits: AccessLimits

    @property
    def subscription(self) -> Subscription:
        """What this client takes."""
        return self._subscription

    @subscription.setter
    def subscription(self, value: Subscription) -> None:
        self._subscription = value
        # Derived once here, not per update: whether the worker's frames fit as they are.
        self.takes_everything = protocol.is_everything(value)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Channels' `AsyncConsumer.__call__` for a consumer with no layer, less its
        `await_many_dispatch`: with one source of messages that is this loop, but it wraps every
        receive in a task of its own waited for by `asyncio.wait` (a task, a future and a set a
        message, and one more coroutine frame for the connection's life). Broadcasts reach
        consumers through the process hub, so no layer channel is made per consumer."""
        self.scope = scope
        self.channel_layer = None
        self.base_send = send
        try:
            while True:
                await self.dispatch(await receive())
        except StopConsumer:
            pass

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Channels' dispatch without its `aclose_old_connections()` before every handler: a
        thread-pool hop per handshake, client frame and close (three per connection). This
        consumer reaches the database only through `database_sync_to_async`, which closes
        stale connections itself, in the thread that uses them."""
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def websocket_disconnect(self, message: dict[str, Any]) -> None:
        """Channels' without the group discards (this consumer joins none) and the hop."""
        await self.disconnect(message["code"])
        raise StopConsumer

    async def connect(self) -> None:
        """Called when the WebSocket handshake arrives: validate, accept, send the snapshot."""
        config = settings.CONFIG
        raw = handshake.raw_query(self.scope)
        try:
            query = handshake.parse_query(raw, max_subscriptions=config.ws_max_subscriptions)
        except ProtocolError as exc:
            self.state = self.state.to(ConnectionState.REFUSED)
            await handshake.answer_malformed(self, raw, exc)
            return
        self.cadence, self.fmt, self.subscription = query.cadence, query.fmt, query.subscription
        self.limits = gate.process_limits(config)
        admitted = await handshake.admit(self.scope, query, self.limits)
        if isinstance(admitted, Refusal):
            self.state = self.state.to(ConnectionState.REFUSED)
            await handshake.answer_refused(self, admitted)
            return
        self.admission, self.subscription = admitted
        self.hub = await get_hub()
        await self.accept()
        # The handshake's headers (~0.9 KiB) were for the gate; nothing reads them again.
        self.scope["headers"] = ()
        self.bucket = TokenBucket(config.client_messages_per_s, config.client_messages_burst)
        self.refreshes = RefreshMerger(
            TokenBucket(config.client_refreshes_per_s, config.client_refreshes_burst),
            self._send_snapshot,
        )
        self.max_subscriptions = config.ws_max_subscriptions
        self.refusals = EventWindow(config.client_abuse_refusals, config.client_abuse_window_s)
        self.client_id = f"{self.hub.process_id}-{next(_ids)}-{uuid.uuid4().hex[:4]}"
        self.connected_at = rfc3339_now()
        self.writer = SocketWriter(
            self.base_send,
            limit=config.ws_send_buffer_messages,
            limit_bytes=config.ws_send_buffer_bytes,
            on_overflow_drained=self._resync,
            write_timeout_s=config.ws_write_timeout_s,
            on_stalled=self._stalled,
            send_now=send_now_of(self.base_send),
        )
        self.continuity = Continuity(0)
        self.sent_seq = 0
        self.max_bytes = config.ws_max_message_bytes
        self.state = self.state.to(ConnectionState.OPEN)
        if query.resume_error is not None:
            self._refuse(query.resume_error.code, query.resume_error.message)
        # No await from here to register: the hub delivers no update in between, so a
        # resumed client misses none and gets none twice.
        if query.resume is None:
            self._send_snapshot()
        else:
            self._resume(query.resume)
        self.hub.register(self)
        metrics.connected(self.cadence, self.subscription)
        clientlog.connected(self)

    async def disconnect(self, code: int) -> None:
        """Called when the socket closes, for any reason."""
        if self.admission is not None:
            self.limits.close(self.admission)
            self.admission = None  # counted once, however many times disconnect is called
        if self.state is ConnectionState.CLOSED:
            return
        was_on_hub = self.state.live or self.state is ConnectionState.CLOSING
        self.state = self.state.to(ConnectionState.CLOSED)
        if was_on_hub:
            self.hub.unregister(self)
            self.writer.close()
            self.refreshes.cancel()
            metrics.disconnected(self.cadence, self.subscription)
            clientlog.closed(self, code)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Called for each client frame."""
        data: str | bytes = text_data if text_data is not None else (bytes_data or b"")
        if not self.state.live:
            return
        size = len(data) if isinstance(data, bytes) else len(data.encode())
        if size > self.max_bytes:
            metrics.received("invalid")
            self._refuse(ErrorCode.TOO_LARGE, f"messages are limited to {self.max_bytes} bytes")
            self.state = self.state.to(ConnectionState.CLOSING)
            await self.close(code=CLOSE_TOO_LARGE)
            return
        if not await self._within_rate():
            return
        try:
            message = protocol.parse_client_message(data, max_bytes=self.max_bytes)
        except ProtocolError as exc:
            metrics.received("invalid")
            self._refuse(exc.code, exc.message)
            return
        metrics.received(message.type)
        if message.type == "ping":
            self._write(protocol.encode(protocol.PONG, self.fmt))
            metrics.sent(self.cadence, "pong")
        elif message.type == "refresh":
            self.refreshes.request()
        else:
            assert message.channels is not None
            if message.type == "subscribe":
                assert self.admission is not None
                refusal = gate.channel_refusal(self.admission.credential, message.channels)
                if refusal is not None:
                    await self._close_refused(refusal)
                    return
            change = protocol.subscribe if message.type == "subscribe" else protocol.unsubscribe
            new = change(self.subscription, message.channels)
            if protocol.subscription_size(new) > self.max_subscriptions:
                metrics.WS_BOUNDS.labels("too_many_subscriptions").inc()
                self._refuse(
                    ErrorCode.TOO_MANY_SUBSCRIPTIONS,
                    f"at most {self.max_subscriptions} subscriptions per connection"
                    " (a channel, or a symbol of a narrowed one); nothing was changed",
                )
                return
            old, self.subscription = self.subscription, new
            metrics.resubscribed(old, self.subscription)
            self._send_snapshot()

    # --- called by the hub -----------------------------------------------------------------

    def deliver(self, event: StateUpdate, changes: dict[str, Any]) -> bool:
        """Forward one update of this consumer's cadence, or resync on a gap.

        Returns whether an update frame was written; the hub counts those once per event.
        """
        if not self.state.live:
            return False
        epoch = event.get("epoch", "")
        decision = self.continuity.check(event["base_seq"], event["seq"], epoch)
        if decision == "skip":
            return False
        if self.writer.overflowed:
            return False  # stalled: the drain ends with one fresh snapshot (on_overflow_drained)
        if decision == "resync":
            self._resync()
            return False
        self.continuity.position = event["seq"]
        if self.takes_everything:
            self._write(event["json"] if self.fmt is Format.JSON else event["msgpack"])
            self.sent_seq = event["seq"]
            return True
        return self._write_narrowed(event["seq"], epoch, changes)

    def _write_narrowed(self, seq: int, epoch: str, changes: dict[str, Any]) -> bool:
        """Write the part of an update this client takes, if any (re-encoded for it).

        Its base_seq is the seq of the client's previous frame, not the worker's base: the
        updates in between held nothing this client takes, so the client's state is the state
        at any seq from that frame's on, and the update applies to it exactly (contract 4.1).
        """
        narrowed = protocol.filter_changes(changes, self.subscription)
        if not narrowed:
            return False
        started = time.perf_counter()
        frame = protocol.update_frame(seq, self.sent_seq, epoch, rfc3339_now(), narrowed)
        payload = protocol.encode(frame, self.fmt)
        metrics.encoded(self.fmt, "update", payload, started)
        self._write(payload)
        self.sent_seq = seq
        return True

    def catch_up(self) -> None:
        """Called after the hub reloaded its mirror: a client behind it gets a snapshot."""
        mirror = self.hub.mirror
        if self.state.live and (
            self.state is ConnectionState.AWAITING_MIRROR
            or self.continuity.position < mirror.seq
            or self.continuity.epoch != mirror.epoch
        ):
            self._resync()

    def info(self) -> ClientInfo:
        """This connection's presence entry."""
        client = self.scope.get("client") or ("", 0)
        user, token = identity(getattr(self.admission, "credential", None))
        return ClientInfo(
            id=self.client_id,
            type=self.cadence,
            format=self.fmt.value,
            subscriptions=describe_subscription(self.subscription),
            remote_addr=str(client[0]),
            connected_at=self.connected_at,
            process=self.hub.process_id,
            messages_sent=self.writer.sent,
            user=user,
            token=token,
        )

    async def kick(self) -> None:
        """Close with 4000: an admin asked."""
        log.info("client kicked", extra={"client": self.client_id})
        metrics.KICKS.inc()
        await self.close_with(CLOSE_KICKED)

    def notify(self, frames: Mapping[Format, str | bytes]) -> bool:
        """Write a staff notice in this client's format (dropped while the client is stalled)."""
        if not self.state.live or self.writer.overflowed:
            return False
        self._write(frames[self.fmt])
        return True

    async def close_with(self, code: int) -> None:
        """Close the socket with `code` and stop delivering to it."""
        if self.state.live:
            self.state = self.state.to(ConnectionState.CLOSING)
        await self.close(code=code)
        await self.disconnect(code)

    # --- internals -------------------------------------------------------------------------

    async def _within_rate(self) -> bool:
        """The per-connection token bucket; sustained abuse closes the socket with 4429."""
        now = time.monotonic()
        if self.bucket.take(now):
            return True
        limit_hit("messages")
        if self.refusals.add(now) >= self.refusals.limit:
            limit_hit("abuse")
            await self._close_refused(
                Refusal(CLOSE_TOO_MANY, "sustained message flood; reconnect later")
            )
        else:
            self._refuse(ErrorCode.RATE_LIMITED, "too many messages; slow down")
        return False

    async def _close_refused(self, refusal: Refusal) -> None:
        refused(refusal.code)
        log.info(
            "client closed by access control",
            extra={"client": self.client_id, "code": refusal.code, "reason": refusal.reason},
        )
        if self.state.live:
            self.state = self.state.to(ConnectionState.CLOSING)
        await self.close(code=refusal.code, reason=refusal.reason)
        await self.disconnect(refusal.code)

    def _resume(self, request: ResumeRequest) -> None:
        """`?since=&epoch=` (contract 4.1): the missed updates if this process holds them, else
        a snapshot saying why not."""
        answer = self.hub.resume(self.cadence, request.since, request.epoch)
        if isinstance(answer, Refused):
            self._send_snapshot(refused=answer.reason.value)
            return
        self._write(protocol.encode(protocol.recovered_frame(*answer[:3]), self.fmt))
        self.sent_seq = answer.since
        replayed = 0
        for entry in answer.entries:
            if self.takes_everything:  # the worker's frames as they are: no encoding
                self._write(entry.json if self.fmt is Format.JSON else entry.msgpack)
                self.sent_seq = entry.seq
                replayed += 1
            else:
                changes = msgpack.unpackb(entry.msgpack)["changes"]
                replayed += self._write_narrowed(entry.seq, answer.epoch, changes)
        self.continuity.position = answer.seq
        self.continuity.epoch = answer.epoch
        metrics.sent(self.cadence, "recovered")
        metrics.sent(self.cadence, "update", replayed)

    def _send_snapshot(self, *, refused: str | None = None) -> None:
        if not self.state.live:
            return
        if self.writer.backlogged:
            # The socket is not taking what it has: the slow-client rule. What is queued is
            # dropped and one fresh snapshot follows the drain — never snapshot after snapshot
            # queued for a client that does not read.
            self.writer.stale()
            return
        mirror = self.hub.mirror
        if mirror.seq < self.continuity.position and mirror.epoch == self.continuity.epoch:
            # The mirror is behind what this client has (it is reloading after a gap): a
            # snapshot now would move the client's seq backwards. The hub calls back.
            self._await_mirror()
            return
        if self.state is ConnectionState.AWAITING_MIRROR:
            self.state = self.state.to(ConnectionState.OPEN)
        self._write(mirror.snapshot(self.subscription, self.fmt, refused=refused))
        self.continuity.position = mirror.seq
        self.continuity.epoch = mirror.epoch
        self.sent_seq = mirror.seq
        metrics.sent(self.cadence, "snapshot")

    def _resync(self) -> None:
        """A fresh snapshot because the client missed updates (gap, overflow, mirror reload)."""
        if self.hub.reloading:
            # The mirror itself missed updates and is being reloaded: a snapshot of it now is
            # stale and would be followed by another a moment later. One, once it has
            # reloaded (the hub calls catch_up on every member then).
            self._await_mirror()
            return
        metrics.RESYNCS.inc()
        self._send_snapshot()

    def _await_mirror(self) -> None:
        """Owe this client a snapshot until the mirror can give one (`catch_up` sends it)."""
        if self.state is ConnectionState.OPEN:
            self.state = self.state.to(ConnectionState.AWAITING_MIRROR)

    def _stalled(self) -> None:
        """The writer gave up: a write has not completed for `ws_write_timeout_s`."""
        log.warning(
            "closing a client that stopped reading",
            extra={"client": self.client_id, "write_timeout_s": settings.CONFIG.ws_write_timeout_s},
        )
        metrics.WS_BOUNDS.labels("write_timeout").inc()
        if self.state.live:  # not when a close (a kick, a shutdown) is already under way
            self._closing = asyncio.get_running_loop().create_task(self.close_with(CLOSE_POLICY))

    def _write(self, payload: str | bytes) -> None:
        self.writer.write_payload(payload)

    def _refuse(self, code: ErrorCode, message: str) -> None:
        self._write(protocol.encode(protocol.error_frame(code, message), self.fmt))
        metrics.sent(self.cadence, "error")
