"""`manage.py run_recorder`: the history recorder process (history stream -> PostgreSQL)."""

from __future__ import annotations

import signal
import threading
from argparse import ArgumentParser
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand
from prometheus_client import start_http_server

from history.recorder import Recorder, RecorderOptions


class Command(BaseCommand):
    help = "Record the worker's history stream into PostgreSQL (run one or more)."

    def add_arguments(self, parser: ArgumentParser) -> None:
        """Called by manage.py to declare the options."""
        parser.add_argument(
            "--metrics-port",
            type=int,
            default=None,
            help="serve Prometheus metrics on this port of metrics_bind_host "
            "(default: recorder_metrics_port; 0: do not serve)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        """Called by manage.py: record until SIGTERM or SIGINT, finishing the batch in hand."""
        config = settings.CONFIG
        port = options["metrics_port"]
        if port is None:
            port = config.recorder_metrics_port
        if port:
            start_http_server(port, addr=config.metrics_bind_host)
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        Recorder(RecorderOptions.from_config(config)).run(stop)
