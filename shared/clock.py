"""The wall clock as the product writes it, and waiting on it: RFC 3339 in UTC, milliseconds."""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime


def rfc3339(timestamp: float) -> str:
    """A Unix time as RFC 3339 in UTC with milliseconds, e.g. 2026-11-23T12:00:00.250Z."""
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def rfc3339_now() -> str:
    """The current UTC time as RFC 3339 with milliseconds, e.g. 2026-11-23T12:00:00.250Z."""
    return rfc3339(time.time())


async def sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    """Sleep up to `seconds`, waking early when `stop` is set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
