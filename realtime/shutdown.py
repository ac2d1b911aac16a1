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
from realtime.hub import current_hub

log = logging.getLogger(__name__)


class GoingAwayServer(uvicorn.Server):
    """uvicorn's server, closing dashboard sockets with 1001 before its own shutdown."""

    async def shutdown(self, sockets: Any = None) -> None:
        """Called once the server has stopped accepting connections."""
        hub = current_hub()
        if hub is not None:
            closed = await hub.close_all(CLOSE_GOING_AWAY)
            log.info("closed dashboard sockets for shutdown", extra={"sockets": closed})
            with contextlib.suppress(Exception):
                await asyncio.wait_for(hub.stop(), timeout=2)
        await super().shutdown(sockets)
