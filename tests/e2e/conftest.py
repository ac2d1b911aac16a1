"""End-to-end fixtures: the real worker and web processes on loopback (no simulator unless a
test starts one, so that the state changes only when the test says so)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.stack import Stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A worker and one uvicorn web process, shared by the tests of one module."""
    from django.conf import settings

    deployment = Stack(
        redis_url=str(settings.CONFIG.redis_url), log_dir=tmp_path_factory.mktemp("stack")
    )
    try:
        deployment.start_worker()
        deployment.start_web()
        yield deployment
    finally:
        deployment.stop()


@pytest.fixture
def fresh_stack(tmp_path: Path) -> Iterator[Stack]:
    """A deployment for one test that starts its own processes."""
    from django.conf import settings

    deployment = Stack(redis_url=str(settings.CONFIG.redis_url), log_dir=tmp_path)
    try:
        yield deployment
    finally:
        deployment.stop()
