"""Which long-running tasks of a process died, so that `/health/ready` can name them.

A background task that dies must never leave a live process that silently stopped working
(issue 13): its owner restarts it or exits the process, and until the restarted task has lived
`task_failure_report_s` — or while it keeps dying — readiness answers 503 naming it. Each process
that runs such tasks keeps one `TaskHealth`: the worker sends its own in its heartbeat
(`failed_tasks`), read from Redis. (The web process's loops run under realtime/supervision.py,
which readiness reads directly.)

Usage: `health.watch(asyncio.create_task(coro, name="hub"))` notes the task's death if it ends
with an exception (a cancellation is no death); `health.failed(name, exc)` notes one by hand.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class TaskFailure:
    """One death: the task's name, its exception (type and message) and when (epoch seconds)."""

    name: str
    error: str
    at: float


class TaskHealth:
    """The deaths of one process's long-running tasks."""

    def __init__(self) -> None:
        self._latest: dict[str, TaskFailure] = {}
        self._deaths: deque[float] = deque(maxlen=1000)

    def watch(self, task: asyncio.Task[Any]) -> asyncio.Task[Any]:
        """Note `task`'s death if it ends with an exception; return it (for chaining)."""
        task.add_done_callback(self._on_done)
        return task

    def failed(self, name: str, error: BaseException | str) -> None:
        """Note that task `name` died of `error` just now."""
        text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        now = time.time()
        self._latest[name] = TaskFailure(name, text[:300], now)
        self._deaths.append(now)

    def failing(self, within_s: float) -> dict[str, TaskFailure]:
        """The tasks that died within the last `within_s` seconds, by name."""
        since = time.time() - within_s
        return {name: f for name, f in sorted(self._latest.items()) if f.at > since}

    def deaths_within(self, seconds: float) -> int:
        """How many deaths (of any task) happened in the last `seconds`."""
        since = time.time() - seconds
        return sum(1 for at in self._deaths if at > since)

    def report(self, within_s: float) -> dict[str, str]:
        """`failing(within_s)` as `{name: error}`, for a heartbeat or a log line."""
        return {name: failure.error for name, failure in self.failing(within_s).items()}

    def _on_done(self, task: asyncio.Task[Any]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self.failed(task.get_name(), task.exception() or "")
