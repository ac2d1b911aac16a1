"""Prometheus metrics of the web process (contract section 6), served at `GET /metrics`.

Hot path rule: per client per update at most one counter step, and none where it can be
avoided — the hub counts an update once per event, times the clients it reached (`inc(n)`), and
observes the latency and size of a broadcast frame once per event, never per client. Labels
carry only bounded values: the cadence (`web`/`tui`), the format, the message type and the five
channel names.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Final

from prometheus_client import Counter, Gauge, Histogram

from realtime.protocol import Format, Subscription, size_of
from shared.cadences import CADENCES
from shared.metric_children import Children

CONNECTED_CLIENTS = Gauge(
    "dashboard_connected_clients", "Registered dashboard connections by cadence.", ["client_type"]
)
ACTIVE_CONNECTIONS = Gauge(
    "dashboard_active_connections", "Open WebSocket connections of this process."
)
MESSAGES_SENT = Counter(
    "dashboard_messages_sent",
    "Frames handed to client sockets, by cadence and type (snapshot, update, error, pong).",
    ["client_type", "message_type"],
)
MESSAGES_RECEIVED = Counter(
    "dashboard_messages_received",
    "Client frames by parsed type (subscribe, unsubscribe, refresh, ping) or invalid.",
    ["message_type"],
)
# Buckets around the cadences: the tui cadence is 100 ms, the web one 250 ms; a broadcast that
# takes longer than its cadence is late by a whole frame.
BROADCAST_LATENCY = Histogram(
    "dashboard_broadcast_latency_seconds",
    "From the worker's tick (the event's sent_at) to the hub handing the frame to consumers.",
    ["client_type"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
SERIALIZATION_DURATION = Histogram(
    "dashboard_serialization_duration_seconds",
    "Time to encode one frame in the web process (snapshots, narrowed updates).",
    ["format"],
    buckets=(0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25),
)
# From a pong (~15 bytes) to a full snapshot of 10,000 symbols (a few MB).
MESSAGE_SIZE = Histogram(
    "dashboard_message_size_bytes",
    "Size of encoded frames: once per event for broadcast updates, once per encode otherwise.",
    ["format", "message_type"],
    buckets=(64, 256, 1024, 4096, 16_384, 65_536, 262_144, 1_048_576, 4_194_304),
)
CLIENT_SUBSCRIPTIONS = Gauge(
    "dashboard_client_subscriptions",
    "Connections subscribed to each channel (wholly or to some of its symbols).",
    ["channel"],
)
RESYNCS = Counter(
    "dashboard_resyncs", "Fresh snapshots sent because a client missed updates (gap, overflow)."
)
RESUMES = Counter(
    "dashboard_ws_resumes",
    "Reconnects with since/epoch (contract 4.1): recovered, or the reason a snapshot was sent"
    " instead (epoch_changed, too_old, unknown)",
    ["client_type", "result"],
)
for _cadence in CADENCES:
    for _result in ("recovered", "epoch_changed", "too_old", "unknown"):
        RESUMES.labels(_cadence, _result)
KICKS = Counter("dashboard_kicks", "Connections closed with 4000 because an admin asked.")
WS_BOUNDS = Counter(
    "dashboard_ws_bounds",
    "Per-connection bounds reached: refreshes merged, subscribes refused (too_many_subscriptions),"
    " clients closed because their writes stalled (write_timeout)",
    ["bound"],
)
for _bound in ("refresh_merged", "too_many_subscriptions", "write_timeout"):
    WS_BOUNDS.labels(_bound)

_FORMATS: Final = tuple(Format)

# The children of the labelled metrics the hot paths step, bound once (shared.metric_children).
_SENT: Final[Children[Counter]] = Children(MESSAGES_SENT)
_RECEIVED: Final[Children[Counter]] = Children(MESSAGES_RECEIVED)
_ENCODE_DURATION: Final[Children[Histogram]] = Children(SERIALIZATION_DURATION)
_SIZE: Final[Children[Histogram]] = Children(MESSAGE_SIZE)
_LATENCY: Final[Children[Histogram]] = Children(BROADCAST_LATENCY)
_CONNECTED: Final[Children[Gauge]] = Children(CONNECTED_CLIENTS)
_SUBSCRIPTIONS: Final[Children[Gauge]] = Children(CLIENT_SUBSCRIPTIONS)


def sent(client_type: str, message_type: str, n: int = 1) -> None:
    """Count `n` frames of `message_type` handed to clients of `client_type`."""
    if n:
        _SENT[client_type, message_type].inc(n)


def received(message_type: str) -> None:
    """Count one client frame of `message_type` (or `invalid`)."""
    _RECEIVED[message_type].inc()


def encoded(fmt: Format, message_type: str, payload: str | bytes, started: float) -> None:
    """Record one encode done in this process, started at `time.perf_counter()` == `started`."""
    _ENCODE_DURATION[fmt.value].observe(time.perf_counter() - started)
    _SIZE[fmt.value, message_type].observe(size_of(payload))


def broadcast(client_type: str, sent_at: float, sizes: Iterable[tuple[Format, int]]) -> None:
    """Record one broadcast event: its latency since the worker's tick and its frame sizes."""
    _LATENCY[client_type].observe(max(0.0, time.time() - sent_at))
    for fmt, size in sizes:
        _SIZE[fmt.value, "update"].observe(size)


def connected(client_type: str, subscription: Subscription) -> None:
    """A connection registered with the hub."""
    _CONNECTED[client_type].inc()
    ACTIVE_CONNECTIONS.inc()
    subscribed(subscription, 1)


def disconnected(client_type: str, subscription: Subscription) -> None:
    """A registered connection left."""
    _CONNECTED[client_type].dec()
    ACTIVE_CONNECTIONS.dec()
    subscribed(subscription, -1)


def resubscribed(old: Subscription, new: Subscription) -> None:
    """A connection changed its subscription."""
    subscribed(old, -1)
    subscribed(new, 1)


def subscribed(subscription: Subscription, step: int) -> None:
    """Move each channel of `subscription` by `step`."""
    for channel in subscription:
        _SUBSCRIPTIONS[channel].inc(step)


def _export_zeroes() -> None:
    """Create the label sets known in advance, so a scrape shows them before any traffic."""
    for client_type in CADENCES:
        CONNECTED_CLIENTS.labels(client_type)
        for message_type in ("snapshot", "update", "error", "pong", "notice"):
            MESSAGES_SENT.labels(client_type, message_type)
    for message_type in ("subscribe", "unsubscribe", "refresh", "ping", "invalid"):
        MESSAGES_RECEIVED.labels(message_type)


_export_zeroes()
