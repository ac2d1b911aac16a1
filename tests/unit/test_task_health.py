"""TaskHealth: which background tasks died lately (shared/supervision.py)."""

from __future__ import annotations

import asyncio

import pytest

from shared.supervision import TaskHealth


async def test_a_task_that_raises_is_noted_by_name() -> None:
    health = TaskHealth()

    async def broken() -> None:
        raise RuntimeError("boom")

    task = health.watch(asyncio.create_task(broken(), name="hub"))
    with pytest.raises(RuntimeError):
        await task
    await asyncio.sleep(0)  # done callbacks run on the next loop iteration
    assert health.report(60) == {"hub": "RuntimeError: boom"}
    assert health.deaths_within(60) == 1


async def test_cancelled_and_finished_tasks_are_no_deaths() -> None:
    health = TaskHealth()
    sleeper = health.watch(asyncio.create_task(asyncio.sleep(10), name="sleeper"))
    finished = health.watch(asyncio.create_task(asyncio.sleep(0), name="finished"))
    sleeper.cancel()
    await asyncio.gather(sleeper, finished, return_exceptions=True)
    await asyncio.sleep(0)
    assert health.failing(60) == {}


def test_a_death_is_reported_only_within_the_window() -> None:
    health = TaskHealth()
    health.failed("flush", "KeyError: 'x'")
    assert list(health.failing(60)) == ["flush"]
    assert health.failing(0) == {}  # "died within the last 0 s": over
    assert health.deaths_within(0) == 0
