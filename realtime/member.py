"""What the hub (realtime/hub.py) needs of a connected consumer: the `Member` interface.

realtime/consumers.py `DashboardConsumer` is the one implementation; the hub's helpers
(notices, status, shutdown, the access re-check) take members through this interface.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from access.gate import Admission
from realtime.presence import ClientInfo
from realtime.protocol import Format, Subscription
from shared.events import StateUpdate


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
