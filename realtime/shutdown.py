"""SIGTERM for the web process: close every dashboard socket with 1001, then stop serving.

uvicorn closes WebSockets with 1012 ("service restart") when it shuts down; the contract
promises 1001 ("going away"), so the hub's consumers are closed first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import uvicorn

from realtime.close_codes import CLOSE_GOING_AWAY
from realtime.hub import current_hub, get_hub

log = logging.getLogger(__name__)


class GoingAwayServer(uvicorn.Server):
    """uvicorn's server, closing dashboard sockets with 1001 before its own shutdown.

    It also starts the hub with the server rather than on the first WebSocket: the hub's
    resume rings (contract 4.1) then hold the updates since the process started, so a client
    that moves here from another web process can resume even if it is the first one here.
    """

    async def startup(self, sockets: Any = None) -> None:
        """Called once in the server's event loop, before it accepts connections."""
        try:  # not under a timeout: a start cancelled halfway would leave its subscription
            await get_hub()  # (Redis' connect timeout bounds it)
        except Exception as exc:  # Redis away: the first WebSocket starts it, as without this
            log.warning("hub not started with the server", extra={"error": str(exc)})
        await super().startup(sockets)

    async def shutdown(self, sockets: Any = None) -> None:
        """Called once the server has stopped accepting connections."""
        hub = current_hub()
        if hub is not None:
            closed = await hub.close_all(CLOSE_GOING_AWAY)
            log.info("closed dashboard sockets for shutdown", extra={"sockets": closed})
            with contextlib.suppress(Exception):
                await asyncio.wait_for(hub.stop(), timeout=2)
        await super().shutdown(sockets)
