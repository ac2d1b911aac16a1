"""The background-loop supervisor (shared/supervision.py): restart, report, stop."""

from __future__ import annotations

import asyncio

from shared import supervision
from shared.supervision import TaskSupervisor


async def _until(condition: object, timeout: float = 5.0) -> None:  # noqa: ASYNC109
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.01)


async def test_a_loop_that_raises_is_reported_down_then_restarted() -> None:
    runs: list[int] = []
    release = asyncio.Event()

    async def flaky() -> None:
        runs.append(1)
        if len(runs) == 1:
            raise RuntimeError("boom")
        await release.wait()
        await asyncio.Event().wait()  # runs for good

    supervisor = TaskSupervisor("test")
    supervisor.start("flaky", flaky)
    try:
        await _until(lambda: supervisor.health()["flaky"]["status"] == "down")
        state = supervision.check()
        assert "test-flaky" in state["down"]
        assert state["status"] == "down"
        assert supervisor.health()["flaky"]["error"] == "RuntimeError: boom"
        await _until(lambda: len(runs) == 2)
        assert supervisor.health()["flaky"] == {
            "status": "up",
            "restarts": 1,
            "error": "RuntimeError: boom",
        }
        assert "test-flaky" not in supervision.check()["down"]
    finally:
        await supervisor.stop()
    assert "test-flaky" not in supervision.check()["loops"]


async def test_a_loop_that_returns_counts_as_stopped() -> None:
    async def ends() -> None:
        return

    supervisor = TaskSupervisor("test")
    supervisor.start("ends", ends)
    try:
        await _until(lambda: supervisor.health()["ends"]["restarts"] >= 1)
        assert supervisor.health()["ends"]["error"] == "returned"
    finally:
        await supervisor.stop()


async def test_restart_on_purpose_is_not_a_failure() -> None:
    starts: list[int] = []

    async def forever() -> None:
        starts.append(1)
        await asyncio.Event().wait()

    supervisor = TaskSupervisor("test")
    supervisor.start("forever", forever)
    try:
        await _until(lambda: len(starts) == 1)
        await supervisor.restart("forever")
        await _until(lambda: len(starts) == 2)
        assert supervisor.health()["forever"] == {"status": "up", "restarts": 0, "error": None}
    finally:
        await supervisor.stop()
