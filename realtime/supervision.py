"""A process's background loops, watched: one that dies is logged, reported and restarted.

A loop of the web process (the hub's receive, presence, watchdog, GC policy, access re-check)
runs forever; if one raises or returns, the process would go on answering `/health` while it
had silently stopped doing that job. Each loop runs under a `TaskSupervisor`: a loop that stops
unexpectedly is logged with its traceback, counted, reported by `/health/ready` (503, naming it)
until it runs again, and restarted after a backoff (so a loop that fails at once does not spin).

The interface is small on purpose, so that every process kind can share it: `start(name,
factory)`, `restart(name)`, `health()`; `check()` is the readiness check over every supervisor
alive in the process.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
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
