"""Runs the demo desk: the Redis publisher and the three backend services, until told to stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Final
from urllib.parse import urlsplit

import orjson

from aggregation.simulator.desk import Desk
from aggregation.simulator.publisher import Publisher, PublishStats
from aggregation.simulator.servers import StatusHttpServer, account_server, order_server
from shared import redis_clients

if TYPE_CHECKING:
    from shared.config import Settings

logger = logging.getLogger("aggregation.simulator")

LOG_EVERY_S: Final = 1.0  # one line of counts a second (design principle 9), never per message
# Fail a Redis command in seconds rather than hang on a dead connection, so the publisher
# notices an outage and backs off; a healthy loopback Redis answers in well under 1 ms.
REDIS_SOCKET_TIMEOUT_S: Final = 5.0


async def run_simulator(
    config: Settings,
    *,
    duration_s: float | None = None,
    stop: asyncio.Event | None = None,
    seed: int | None = None,
) -> PublishStats:
    """Run desk, publisher and servers until `duration_s` passes, `stop` is set or a signal."""
    stop = stop or asyncio.Event()
    desk = Desk(symbols=config.simulator_symbols, seed=seed)
    redis = redis_clients.async_client(
        config,
        socket_connect_timeout=REDIS_SOCKET_TIMEOUT_S,
        socket_timeout=REDIS_SOCKET_TIMEOUT_S,
    )
    publisher = Publisher(
        redis=redis,
        desk=desk,
        input_prefix=config.input_prefix,
        ticks_per_s=config.simulator_ticks_per_s,
    )
    host, port = _host_port(config)
    servers = (
        order_server(desk, config.order_service_grpc),
        account_server(desk, config.account_service_grpc),
    )
    http = StatusHttpServer(
        host=host, port=port, body=lambda: orjson.dumps({"strategies": desk.strategies()})
    )
    with _stop_on_signals(stop):
        async with contextlib.AsyncExitStack() as cleanup:
            cleanup.push_async_callback(redis.aclose)
            for server in (*servers, http):
                await server.start()
                cleanup.push_async_callback(server.stop)
            logger.info(
                "simulator started",
                extra={"symbols": len(desk.symbols), "ticks_per_s": config.simulator_ticks_per_s},
            )
            reporter = asyncio.create_task(_report(publisher.stats, stop))
            cleanup.push_async_callback(_cancel, reporter)
            stats = await publisher.run(duration_s=duration_s, stop=stop)
    logger.info("simulator stopped", extra=stats.as_dict())
    return stats


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _host_port(config: Settings) -> tuple[str, int]:
    url = urlsplit(str(config.strategy_service_http))
    return url.hostname or "localhost", url.port or 80


async def _report(stats: PublishStats, stop: asyncio.Event) -> None:
    """Log the counts of the last interval once per LOG_EVERY_S."""
    before = stats.as_dict()
    while not stop.is_set():
        await asyncio.sleep(LOG_EVERY_S)
        now = stats.as_dict()
        logger.info(
            "simulator published",
            extra={name: now[name] - before[name] for name in now} | {"ticks_total": now["ticks"]},
        )
        before = now


@contextlib.contextmanager
def _stop_on_signals(stop: asyncio.Event) -> Iterator[None]:
    """Set `stop` on SIGINT/SIGTERM while inside; only the main thread can own signals."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    loop = asyncio.get_running_loop()
    handled = (signal.SIGINT, signal.SIGTERM)
    for signum in handled:
        loop.add_signal_handler(signum, stop.set)
    try:
        yield
    finally:
        for signum in handled:
            loop.remove_signal_handler(signum)
