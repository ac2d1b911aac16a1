"""The hub's garbage-collection policy (realtime.gc_policy)."""

from __future__ import annotations

import asyncio
import gc

from realtime.gc_policy import gc_policy


async def test_the_heap_is_frozen_as_soon_as_the_policy_starts() -> None:
    # Full collections walk every object not frozen: before the first freeze, all of Django's
    # heap, 100-400 ms each while a connection ramp piles up objects (docs/BENCHMARKS.md).
    gc.unfreeze()
    task = asyncio.get_running_loop().create_task(gc_policy())
    try:
        await asyncio.sleep(0)  # the policy's first step, before its first period
        assert gc.get_freeze_count() > 0
    finally:
        task.cancel()
        gc.unfreeze()
