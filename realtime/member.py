"""What the hub (realtime/hub.py) needs of a connected consumer: the `Member` interface.

realtime/consumers.py `DashboardConsumer` is the one implementation; the hub's helpers
(notices, status, shutdown, the access re-check) take members through this interface.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from access.gate import Admission
from realtime.presence import ClientInfo
from realtime.protocol import Format, Subscription
from shared.events import StateUpdate

log = logging.getLogger(__name__)


class Member(Protocol):
    """What the hub needs of a connected consumer."""

    client_id: str
    cadence: str
    admission: Admission | None

    @property
    def subscription(self) -> Subscription:
        """The channels it takes, with the symbols of narrowed ones."""

    def deliver(self, event: StateUpdate, changes: dict[str, Any]) -> bool:
        """Called for every update of the member's cadence; must not block.

        Returns whether an update frame was written (the hub counts them once per event).
        """

    def catch_up(self) -> None:
        """Called after the mirror reloaded: resync if the mirror is ahead of the member."""

    def info(self) -> ClientInfo:
        """The member's presence entry."""

    async def kick(self) -> None:
        """Close the connection with code 4000 (an admin asked)."""

    def notify(self, frames: Mapping[Format, str | bytes]) -> bool:
        """Write a frame the hub encoded in each format (a notice, a status, a shutdown)."""

    async def close_with(self, code: int) -> None:
        """Close the connection with `code`."""


class Recipient(Protocol):
    """A connection a frame encoded once for all goes to (a Member has all of this)."""

    client_id: str
    cadence: str

    def notify(self, frames: Mapping[Format, str | bytes]) -> bool:
        """Write a frame given encoded in each format; whether it was written."""


def write_each(
    recipients: Iterable[Recipient], frames: Mapping[Format, str | bytes], *, what: str
) -> Counter[str]:
    """Write `frames` (a status, notice or shutdown) to each recipient; how many, per cadence."""
    written: Counter[str] = Counter()
    for recipient in tuple(recipients):
        try:  # one broken connection must not stop the rest
            if recipient.notify(frames):
                written[recipient.cadence] += 1
        except Exception:
            log.exception(f"{what} to one client failed", extra={"client": recipient.client_id})
    return written
