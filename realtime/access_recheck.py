"""Closing the sockets whose access was withdrawn, checked once per round for the process."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from access import gate
from access.metrics import refused

if TYPE_CHECKING:
    from realtime.member import Member

log = logging.getLogger(__name__)


async def access_recheck(members: Callable[[], Sequence[Member]], *, every_s: float) -> None:
    """Close sockets whose token was revoked or expired or whose origin was disabled.

    One query per round for the whole process (not per socket): the bound on how long withdrawn
    access keeps a socket open is `access_recheck_s` (+ the lookup cache for new connections,
    `access_cache_s`).
    """
    while True:
        await asyncio.sleep(every_s)
        try:
            closing = await gate.recheck(members())
        except Exception as exc:  # database away: keep serving; the next round retries
            log.warning("access re-check failed", extra={"error": str(exc)})
            continue
        for member, code in closing:
            log.info("access withdrawn", extra={"client": member.client_id, "code": code})
            refused(code)
            await member.close_with(code)
