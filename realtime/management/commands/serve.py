"""`manage.py serve`: run the web process (daphne) on the configured host and port."""

from __future__ import annotations

from typing import Any

from daphne.cli import CommandLineInterface
from django.conf import settings
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Serve HTTP and WebSocket with daphne on DASHBOARD_BIND_HOST:DASHBOARD_PORT."

    def handle(self, *args: Any, **options: Any) -> None:
        """Called by manage.py: hand over to daphne until it exits."""
        config = settings.CONFIG
        CommandLineInterface().run(
            [
                "--bind",
                config.bind_host,
                "--port",
                str(config.port),
                "--verbosity",
                "0",  # daphne's own plain-text logs; ours are JSON lines
                "--application-close-timeout",
                str(int(config.shutdown_timeout_s)),
                settings.ASGI_APPLICATION.replace(".application", ":application"),
            ]
        )
