"""The worker's backend polling: every refresh period, and on demand for strategies."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Final

from redis.exceptions import RedisError

from aggregation import metrics
from aggregation.backends import Backend, BackendUnavailable
from aggregation.ingest import Ingest
from shared.clock import sleep_unless
from shared.config import Settings
from shared.core.records import Channel
from shared.throttled_log import ThrottledLog

_STRATEGY_RELOAD_MIN_S: Final = 1.0  # on-demand Strategy service calls: at most one a second


class BackendPoller:
    """Reloads the cache keys and polls every backend, feeding what they return to `ingest`."""

    def __init__(
        self,
        config: Settings,
        *,
        backends: list[Backend],
        ingest: Ingest,
        throttled: ThrottledLog,
    ) -> None:
        self._config = config
        self._backends = backends
        self._ingest = ingest
        self._throttled = throttled

    async def run(self, done: asyncio.Event) -> None:
        """Reload cache keys and poll every backend each refresh period, and on demand."""
        last_strategy_poll = 0.0
        next_full = 0.0
        loop = asyncio.get_running_loop()
        first = True  # the feed loads the cache keys itself when it connects
        while not done.is_set():
            if loop.time() >= next_full:
                next_full = loop.time() + self._config.refresh_period_s
                if not first:
                    with contextlib.suppress(RedisError, OSError):
                        await self._ingest.load_cache()
                first = False
                await asyncio.gather(*(self._poll(b) for b in self._backends))
                last_strategy_poll = loop.time()
            elif self._ingest.strategy_reload.is_set() and (
                loop.time() - last_strategy_poll >= _STRATEGY_RELOAD_MIN_S
            ):
                self._ingest.strategy_reload.clear()
                last_strategy_poll = loop.time()
                await asyncio.gather(
                    *(self._poll(b) for b in self._backends if b.channel is Channel.STRATEGIES)
                )
            await sleep_unless(done, 0.1)

    async def _poll(self, backend: Backend) -> None:
        try:
            records = await backend.fetch()
        except BackendUnavailable as exc:
            metrics.BACKEND_UP.labels(backend.name).set(0)
            self._throttled.warning(
                f"backend:{backend.name}",
                "backend unavailable",
                backend=backend.name,
                error=str(exc),
            )
            return
        metrics.BACKEND_UP.labels(backend.name).set(1)
        for accepted in records:
            self._ingest.put(accepted, backend.name)
