"""SIGTERM for the web process: tell every dashboard client, close it with 1001, stop serving.

uvicorn closes WebSockets with 1012 ("service restart") when it shuts down; the contract
promises 1001 ("going away"), so the hub's consumers are closed first. Before each 1001 the
client gets `{"type":"shutdown","reconnect_after_ms":N}` (contract 4.1; `Hub.close_all` calls
`announce`), so that it reconnects — to another web process behind the load balancer, resuming
from its seq — at once rather than after a backoff. N is drawn per client uniformly from
[0, ws_shutdown_reconnect_spread_ms): the clients of a process spread their handshakes over
that window instead of arriving on the survivors in the same millisecond.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Iterable
from typing import Any, Final

import uvicorn

from realtime import metrics
from realtime.close_codes import CLOSE_GOING_AWAY
from realtime.member import Recipient, write_each
from realtime.protocol import Format, encode

log = logging.getLogger(__name__)

# The window is cut into this many delays, each frame encoded once per format: 10 ms steps
# for the default 1 s, fine enough to spread handshakes; 2 x 100 tiny encodings per shutdown.
_STEPS: Final = 100


def shutdown_frame(reconnect_after_ms: int) -> dict[str, Any]:
    """The `shutdown` server message."""
    return {"type": "shutdown", "reconnect_after_ms": reconnect_after_ms}


def announce(
    members: Iterable[Recipient], *, spread_ms: int, rng: random.Random | None = None
) -> int:
    """Write a shutdown frame to each member, each with its own delay; how many were written."""
    draw = rng or random.Random()
    steps = max(1, min(_STEPS, spread_ms))
    delays = sorted({spread_ms * i // steps for i in range(steps)})
    frames = [{fmt: encode(shutdown_frame(ms), fmt) for fmt in Format} for ms in delays]
    total = 0
    for member in tuple(members):
        written = write_each((member,), draw.choice(frames), what="shutdown")
        for cadence, count in written.items():
            metrics.sent(cadence, "shutdown", count)
            total += count
    return total


class GoingAwayServer(uvicorn.Server):
    """uvicorn's server, closing dashboard sockets with 1001 before its own shutdown.

    It also starts the hub with the server rather than on the first WebSocket: the hub's
    resume rings (contract 4.1) then hold the updates since the process started, so a client
    that moves here from another web process can resume even if it is the first one here.
    """

    async def startup(self, sockets: Any = None) -> None:
        """Called once in the server's event loop, before it accepts connections."""
        from realtime.hub import get_hub  # the hub imports this module for `announce`

        try:  # not under a timeout: a start cancelled halfway would leave its subscription
            await get_hub()  # (Redis' connect timeout bounds it)
        except Exception as exc:  # Redis away: the first WebSocket starts it, as without this
            log.warning("hub not started with the server", extra={"error": str(exc)})
        await super().startup(sockets)

    async def shutdown(self, sockets: Any = None) -> None:
        """Called once the server has stopped accepting connections."""
        from realtime.hub import current_hub  # the hub imports this module for `announce`

        hub = current_hub()
        if hub is not None:
            closed = await hub.close_all(CLOSE_GOING_AWAY)
            log.info("closed dashboard sockets for shutdown", extra={"sockets": closed})
            with contextlib.suppress(Exception):
                await asyncio.wait_for(hub.stop(), timeout=2)
        await super().shutdown(sockets)
