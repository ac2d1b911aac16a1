"""A dashboard connection's state: one value, moved only by the transitions listed here.

The consumer (realtime/consumers.py) holds one `ConnectionState` instead of separate flags
(connected, closing, waiting for the mirror), as starlette's `WebSocketState`: a move the
table does not list raises `IllegalTransition`, so a handler running in the wrong state is a
loud bug, not a silent write to a closed socket. Pure: no I/O, no Django.

    CONNECTING ──> OPEN <──> AWAITING_MIRROR
        │            │             │
        │            └──> CLOSING <┘
        ├──> REFUSED     │
        └────────────────┴──> CLOSED   (from every state but CLOSED)
"""

from __future__ import annotations

import enum
from typing import Final


class IllegalTransition(RuntimeError):
    """A move from one connection state to another that the table does not allow."""

    def __init__(self, current: ConnectionState, target: ConnectionState) -> None:
        super().__init__(f"connection cannot go from {current.value} to {target.value}")
        self.current = current
        self.target = target


class ConnectionState(enum.Enum):
    """Where one `/ws` connection is in its life."""

    CONNECTING = "connecting"  # the handshake arrived: the query is checked, access asked
    REFUSED = "refused"  # answered with a close code during the handshake; never on the hub
    OPEN = "open"  # accepted and admitted: its snapshot sent, on the hub, taking updates
    AWAITING_MIRROR = "awaiting_mirror"  # open, owed a snapshot the mirror cannot give yet
    CLOSING = "closing"  # the server started a close (kick, shutdown, stall, access): no more
    CLOSED = "closed"  # disconnect ran: off the hub, its access limits released

    def to(self, target: ConnectionState) -> ConnectionState:
        """`target`, if the move from this state to it is legal; else `IllegalTransition`."""
        if target not in _LEGAL[self]:
            raise IllegalTransition(self, target)
        return target

    @property
    def live(self) -> bool:
        """Whether the connection takes updates, frames and snapshots (open, or awaiting one)."""
        return self in _LIVE


_LEGAL: Final[dict[ConnectionState, frozenset[ConnectionState]]] = {
    ConnectionState.CONNECTING: frozenset(
        {ConnectionState.OPEN, ConnectionState.REFUSED, ConnectionState.CLOSED}
    ),
    ConnectionState.REFUSED: frozenset({ConnectionState.CLOSED}),
    ConnectionState.OPEN: frozenset(
        {ConnectionState.AWAITING_MIRROR, ConnectionState.CLOSING, ConnectionState.CLOSED}
    ),
    ConnectionState.AWAITING_MIRROR: frozenset(
        {ConnectionState.OPEN, ConnectionState.CLOSING, ConnectionState.CLOSED}
    ),
    ConnectionState.CLOSING: frozenset({ConnectionState.CLOSED}),
    ConnectionState.CLOSED: frozenset(),
}
_LIVE: Final = frozenset({ConnectionState.OPEN, ConnectionState.AWAITING_MIRROR})
