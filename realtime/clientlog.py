"""One log line when a `/ws` client connects and one when it closes (the earlier service's
"Client connected" event, plus the close code and how long the client stayed)."""

from __future__ import annotations

import logging
import time
import weakref
from typing import Protocol

from realtime.presence import ClientInfo

log = logging.getLogger("realtime.clients")

# When each open connection was accepted (monotonic), without adding state to the consumer.
_opened: weakref.WeakKeyDictionary[object, float] = weakref.WeakKeyDictionary()


class Client(Protocol):
    """What is logged of a connection: its presence entry."""

    def info(self) -> ClientInfo:
        """This connection's presence entry."""
        ...


def connected(client: Client) -> None:
    """Log `ws.connect` (id, address, type, format); called once the socket is accepted."""
    _opened[client] = time.monotonic()
    log.info("client connected", extra={"event": "ws.connect", **_fields(client.info())})


def closed(client: Client, code: int | None) -> None:
    """Log `ws.close`: the same fields, the close code and the seconds it was connected."""
    opened = _opened.pop(client, None)
    duration = None if opened is None else round(time.monotonic() - opened, 3)
    log.info(
        "client disconnected",
        extra={"event": "ws.close", **_fields(client.info()), "code": code, "duration_s": duration},
    )


def _fields(info: ClientInfo) -> dict[str, object]:
    return {
        "client_id": info.id,
        "remote_addr": info.remote_addr,
        "client_type": info.type,
        "format": info.format,
    }
