"""A process's long-running tasks, watched: one that dies is logged, reported and restarted.

A background task that dies must never leave a live process that silently stopped working
(issue 13): its owner restarts it or exits the process, and until it runs again readiness
answers 503 naming it. Two owners, two restart policies, one module:

- `TaskSupervisor` (the web process: the hub's receive, presence, watchdog, GC policy, access
  re-check) restarts each loop on its own after a backoff, so a loop that fails at once does not
  spin; `check()` is the readiness check over every supervisor alive in the process. Its
  interface is small on purpose: `start(name, factory)`, `restart(name)`, `health()`.
- `TaskHealth` (the worker) records deaths of tasks whose owner restarts them as a group (the
  worker steps down and leads again, or exits after too many deaths); the worker sends
  `report()` in its heartbeat (`failed_tasks`), which readiness reads from Redis. Until a
  restarted task has lived `task_failure_report_s`, or while it keeps dying, it is reported.
  `health.watch(asyncio.create_task(coro, name="hub"))` notes the task's death if it ends with an
  exception (a cancellation is no death); `health.failed(name, exc)` notes one by hand.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Final, TypedDict

log = logging.getLogger(__name__)

# The first restart comes quickly (a one-off fault costs half a second of that job); repeated
# failures back off to a restart every 5 s, which costs nothing while the fault lasts and brings
# the job back within 5 s of its end. A loop that then ran `STABLE_AFTER_S` counts as healthy
# again: its next failure restarts quickly once more.
RESTART_FIRST_S: Final = 0.5
RESTART_MAX_S: Final = 5.0
STABLE_AFTER_S: Final = 60.0

LoopFactory = Callable[[], Coroutine[Any, Any, None]]


class LoopHealth(TypedDict):
    """One loop as `/health/ready` shows it."""

    status: str  # "up" or "down" (stopped, waiting to be restarted)
    restarts: int  # unexpected stops since the process started
    error: str | None  # why it last stopped unexpectedly


@dataclass
class _Loop:
    name: str
    factory: LoopFactory
    task: asyncio.Task[None] | None = None
    up: bool = False
    restarts: int = 0
    error: str | None = None
    restart_requested: bool = False
    consecutive: int = 0


@dataclass(eq=False)  # compared (and hashed, in `_alive`) by identity
class TaskSupervisor:
    """Runs named loops; restarts one that stops unless the supervisor is stopping."""

    owner: str  # who runs them, for the log lines ("hub", "worker")
    _loops: dict[str, _Loop] = field(default_factory=dict)
    _watchers: list[asyncio.Task[None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        _alive.add(self)

    def start(self, name: str, factory: LoopFactory) -> None:
        """Run `factory()` as the loop `name`, and again whenever it stops unexpectedly."""
        loop = _Loop(name, factory, up=True)  # up from now; its watcher starts it next
        self._loops[name] = loop
        self._watchers.append(
            asyncio.get_running_loop().create_task(self._watch(loop), name=f"watch-{name}")
        )

    async def restart(self, name: str) -> None:
        """Stop the loop `name` and start it afresh now (on purpose: not counted as a failure)."""
        loop = self._loops[name]
        task = loop.task
        if task is None or task.done():
            return  # already stopped: its watcher restarts it
        loop.restart_requested = True
        task.cancel()
        await asyncio.wait([task])

    def health(self) -> dict[str, LoopHealth]:
        """Every loop's state."""
        return {
            name: LoopHealth(
                status="up" if loop.up else "down", restarts=loop.restarts, error=loop.error
            )
            for name, loop in self._loops.items()
        }

    async def stop(self) -> None:
        """Cancel every loop (the process is shutting down); nothing is restarted."""
        for watcher in self._watchers:
            watcher.cancel()
        await asyncio.gather(*self._watchers, return_exceptions=True)
        _alive.discard(self)

    async def _watch(self, loop: _Loop) -> None:
        clock = asyncio.get_running_loop()
        while True:
            started = clock.time()
            loop.task = clock.create_task(loop.factory(), name=loop.name)
            loop.up = True
            try:
                await asyncio.wait([loop.task])
            except asyncio.CancelledError:  # the supervisor is stopping
                loop.task.cancel()
                await asyncio.gather(loop.task, return_exceptions=True)
                raise
            if loop.restart_requested and loop.task.cancelled():
                loop.restart_requested = False
                continue
            loop.up = False
            loop.restarts += 1
            loop.error = _why(loop.task)
            stable = clock.time() - started >= STABLE_AFTER_S
            loop.consecutive = 1 if stable else loop.consecutive + 1
            delay = min(RESTART_MAX_S, RESTART_FIRST_S * 2 ** (loop.consecutive - 1))
            log.error(
                "background loop stopped; restarting",
                exc_info=_exception(loop.task),
                extra={
                    "owner": self.owner,
                    "loop": loop.name,
                    "error": loop.error,
                    "restarts": loop.restarts,
                    "restart_in_s": delay,
                },
            )
            await asyncio.sleep(delay)


_alive: weakref.WeakSet[TaskSupervisor] = weakref.WeakSet()


class TasksCheck(TypedDict):
    """The readiness check of this process's loops."""

    status: str  # "up" unless a loop is down
    down: list[str]  # the names of the loops that are down
    loops: dict[str, LoopHealth]


def check() -> TasksCheck:
    """Every supervised loop of this process; down if any is (a process without loops: up)."""
    loops: dict[str, LoopHealth] = {}
    for supervisor in tuple(_alive):
        loops.update(
            {f"{supervisor.owner}-{name}": state for name, state in supervisor.health().items()}
        )
    down = sorted(name for name, state in loops.items() if state["status"] != "up")
    return TasksCheck(status="down" if down else "up", down=down, loops=loops)


def _exception(task: asyncio.Task[None]) -> BaseException | None:
    return None if task.cancelled() else task.exception()


def _why(task: asyncio.Task[None]) -> str:
    if task.cancelled():
        return "cancelled"
    exc = task.exception()
    if exc is None:
        return "returned"  # a loop must never end by itself
    return f"{type(exc).__name__}: {exc}"[:200]


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
