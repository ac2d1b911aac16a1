"""The web process's stats line: one JSON log line per `stats_log_interval_s`, counts since the
previous one, like the worker's `worker.stats` line.

Nothing is counted twice: frames sent and received, resyncs and kicks are read from the
Prometheus metrics (`realtime.metrics`); bytes written and frames dropped for stalled clients
from the socket writers' process totals (`realtime.writer.TOTALS`); errors from the log
handler's count of ERROR records (`shared.logconfig.ErrorCount`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Final, Protocol

from prometheus_client import Counter

from realtime import metrics
from realtime.writer import TOTALS
from shared.logconfig import ErrorCount

log = logging.getLogger(__name__)

_TICK_S: Final = 1.0  # the hub's watchdog calls `tick` once a second


class HubCounts(Protocol):
    """What the stats line reads of the hub."""

    received: int  # update events from the channel layer
    gaps: int  # sequence gaps in the hub's own stream (each reloads the mirror)
    conflated: int  # update events merged into another before their fan-out (behind)

    @property
    def resubscribes(self) -> int:
        """Subscriptions rebuilt by the watchdog."""


@dataclass(frozen=True)
class _Reading:
    """The process's cumulative counts at one moment."""

    at: float
    sent: dict[tuple[str, ...], float]
    received: dict[tuple[str, ...], float]
    resyncs: float
    kicks: float
    bytes_sent: int
    dropped: int
    errors: int
    updates_received: int
    gaps: int
    conflated: int
    resubscribes: int


class WebStats:
    """Logs the stats line every `interval_s` (0: never), when the hub's watchdog ticks."""

    def __init__(self, *, interval_s: float, process_id: str) -> None:
        self.interval_s = interval_s
        self.process_id = process_id
        # Every count starts at zero with the process, and a process has one hub: the first
        # line counts from the process's start, so the connection that started the hub is in it.
        self._last = _Reading(
            at=time.monotonic(),
            sent={},
            received={},
            resyncs=0.0,
            kicks=0.0,
            bytes_sent=0,
            dropped=0,
            errors=0,
            updates_received=0,
            gaps=0,
            conflated=0,
            resubscribes=0,
        )

    def tick(self, hub: HubCounts) -> None:
        """Called every second by the hub; logs the line once an interval has passed."""
        if self.interval_s <= 0:
            return
        # Half a tick of slack: a 1 s sleep may end a hair early, which must not skip a line.
        if time.monotonic() - self._last.at + _TICK_S / 2 < self.interval_s:
            return
        try:
            self.report(hub)
        except Exception:  # a stats line must never stop the hub's watchdog
            log.exception("web stats failed")

    def report(self, hub: HubCounts) -> dict[str, Any]:
        """Log the counts since the previous report; return them."""
        now = _read(hub)
        last, self._last = self._last, now
        sent = _moved(now.sent, last.sent)
        received = _moved(now.received, last.received)
        line: dict[str, Any] = {
            "event": "web.stats",
            "web_process": self.process_id,
            "interval_s": round(now.at - last.at, 3),
            "connections": {
                client_type: int(n)
                for (client_type,), n in _counter_values(metrics.CONNECTED_CLIENTS).items()
            },
            "sent": sum(sent.values()),
            "sent_by_type": {":".join(key): n for key, n in sorted(sent.items())},
            "bytes_sent": now.bytes_sent - last.bytes_sent,
            "dropped": now.dropped - last.dropped,
            "resyncs": int(now.resyncs - last.resyncs),
            "kicks": int(now.kicks - last.kicks),
            "received": sum(received.values()),
            "received_by_type": {key[0]: n for key, n in sorted(received.items())},
            "errors": now.errors - last.errors,
            "updates_received": now.updates_received - last.updates_received,
            "gaps": now.gaps - last.gaps,
            "updates_conflated": now.conflated - last.conflated,
            "resubscribes": now.resubscribes - last.resubscribes,
        }
        log.info("web stats", extra=line)
        return line


def _read(hub: HubCounts) -> _Reading:
    return _Reading(
        at=time.monotonic(),
        sent=_counter_values(metrics.MESSAGES_SENT),
        received=_counter_values(metrics.MESSAGES_RECEIVED),
        resyncs=_single(metrics.RESYNCS),
        kicks=_single(metrics.KICKS),
        bytes_sent=TOTALS.bytes,
        dropped=TOTALS.dropped,
        errors=ErrorCount.count,
        updates_received=hub.received,
        gaps=hub.gaps,
        conflated=hub.conflated,
        resubscribes=hub.resubscribes,
    )


def _counter_values(metric: Any) -> dict[tuple[str, ...], float]:
    """A counter's or gauge's current value per label set (the `_created` samples left out)."""
    return {
        tuple(sample.labels.values()): sample.value
        for family in metric.collect()
        for sample in family.samples
        if not sample.name.endswith("_created")
    }


def _single(counter: Counter) -> float:
    return sum(_counter_values(counter).values())


def _moved(
    now: dict[tuple[str, ...], float], last: dict[tuple[str, ...], float]
) -> dict[tuple[str, ...], int]:
    """Label sets whose count moved, with how much."""
    moved = {key: int(value - last.get(key, 0.0)) for key, value in now.items()}
    return {key: n for key, n in moved.items() if n}
