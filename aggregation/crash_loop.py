"""A worker whose tasks keep dying exits, so that another takes over (issue 13).

A task that dies is restarted with every other one (the worker steps down and leads again). A
worker whose tasks died `_CRASH_LIMIT` times within `_CRASH_WINDOW_S` is crash-looping — the
cause outlives a restart — so it exits, releasing the lease: a standby takes over at once, or
the supervisor starts a fresh process (a live leader that silently stopped broadcasting).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Final

from redis.exceptions import RedisError

from aggregation.leader import LeaderLease
from shared.supervision import TaskHealth

log = logging.getLogger(__name__)

_CRASH_LIMIT: Final = 5
_CRASH_WINDOW_S: Final = 60.0


class TaskCrashLoop(RuntimeError):
    """The worker's tasks keep dying; the process must exit."""


def record_failures(health: TaskHealth, tasks: list[asyncio.Task[Any]]) -> bool:
    """Record and log each of `tasks` that died of an exception; whether any did."""
    failed = False
    for task in tasks:
        exc = task.exception() if task.done() and not task.cancelled() else None
        if exc is not None:
            failed = True
            health.failed(task.get_name(), exc)
            log.error("worker task failed", extra={"task": task.get_name()}, exc_info=exc)
    return failed


async def exit_if_crash_looping(health: TaskHealth, lease: LeaderLease, *, worker: str) -> None:
    """Release the lease and raise `TaskCrashLoop` if the tasks died too often lately."""
    deaths = health.deaths_within(_CRASH_WINDOW_S)
    if deaths < _CRASH_LIMIT:
        return
    tasks = ", ".join(health.failing(_CRASH_WINDOW_S))
    log.error(
        "worker tasks keep failing; exiting so that another worker takes over",
        extra={"worker": worker, "deaths": deaths, "tasks": tasks},
    )
    with contextlib.suppress(RedisError, OSError):
        await lease.release()
    raise TaskCrashLoop(f"{deaths} task deaths within {_CRASH_WINDOW_S:.0f} s ({tasks})")
