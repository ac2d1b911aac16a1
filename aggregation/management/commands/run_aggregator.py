"""`manage.py run_aggregator`: the worker process (contract section 2)."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

from channels.layers import get_channel_layer
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from prometheus_client import start_http_server

from aggregation.backends import build_backends
from aggregation.crash_loop import TaskCrashLoop
from aggregation.worker import Worker


class Command(BaseCommand):
    help = "Ingest, hold the state, broadcast per-cadence updates and log history (leader/standby)."

    def handle(self, *args: Any, **options: Any) -> None:
        """Called by manage.py: serve worker metrics, then run until SIGTERM or SIGINT."""
        config = settings.CONFIG
        if config.worker_metrics_port:
            start_http_server(config.worker_metrics_port, addr=config.metrics_bind_host)
        asyncio.run(self._run())

    async def _run(self) -> None:
        config = settings.CONFIG
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        aggregator = Worker(config, layer=get_channel_layer(), backends=build_backends(config))
        try:
            await aggregator.run(stop)
        except TaskCrashLoop as exc:  # exit 1: the supervisor restarts the process
            raise CommandError(str(exc)) from exc
