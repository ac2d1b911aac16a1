"""`manage.py serve`: run the web process with uvicorn (default) or daphne, as configured."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from dashboard_project import __version__
from shared.config import Settings

log = logging.getLogger("realtime.serve")

APP = "dashboard_project.asgi:application"
# Frames larger than this are refused by the server itself (close 1009) before they are
# buffered; the consumer enforces the contract's 4 KiB on what gets through.
_SERVER_MAX_FRAME = 65_536


class Command(BaseCommand):
    help = "Serve HTTP and WebSocket on DASHBOARD_BIND_HOST:DASHBOARD_PORT."

    def handle(self, *args: Any, **options: Any) -> None:
        """Called by manage.py: hand over to the configured server until it exits."""
        config: Settings = settings.CONFIG
        log.info(
            "starting dashboard server",
            extra={
                "event": "web.start",
                "version": __version__,
                "server": config.web_server,
                "address": f"{config.bind_host}:{config.port}",
            },
        )
        if config.web_server == "daphne":
            _daphne(config)
        else:
            _uvicorn(config)


def _uvicorn(config: Settings) -> None:
    uvicorn_server(config).run()


def uvicorn_server(config: Settings) -> Any:
    """The configured uvicorn server (a `GoingAwayServer`), not started; `bench/conn_memory.py`
    runs it in its own process to look inside."""
    import uvicorn

    from realtime.header_timeout import HeaderTimeoutProtocol
    from realtime.shutdown import GoingAwayServer
    from realtime.ws_close import PausedCloseProtocol

    server_config = uvicorn.Config(
        APP,
        host=config.bind_host,
        port=config.port,
        loop="uvloop",
        http=HeaderTimeoutProtocol.with_timeout(config.http_header_timeout_s),  # httptools
        ws=PausedCloseProtocol,  # websockets-sansio, closing stalled sockets (ws_write_timeout_s)
        ws_max_size=max(_SERVER_MAX_FRAME, config.ws_max_message_bytes),
        ws_ping_interval=config.ws_ping_interval_s,
        # A peer that answers no ping is dropped `ws_idle_timeout_s` after the last one it did.
        ws_ping_timeout=max(1.0, config.ws_idle_timeout_s - config.ws_ping_interval_s),
        ws_per_message_deflate=config.ws_per_message_deflate,
        forwarded_allow_ips=config.forwarded_allow_ips,  # the limits see the client's address
        limit_concurrency=config.http_limit_concurrency or None,
        lifespan="off",
        log_config=None,  # Django's LOGGING (JSON lines) is already in force
        access_log=False,
        timeout_graceful_shutdown=max(1, int(config.shutdown_timeout_s) - 2),
    )
    return GoingAwayServer(server_config)


def _daphne(config: Settings) -> None:
    from daphne.cli import CommandLineInterface

    CommandLineInterface().run(
        [
            "--bind",
            config.bind_host,
            "--port",
            str(config.port),
            "--verbosity",
            "0",  # daphne's own plain-text logs; ours are JSON lines
            "--ping-interval",
            str(int(config.ws_ping_interval_s)),
            "--ping-timeout",
            str(int(config.ws_idle_timeout_s)),
            "--websocket_connect_timeout",
            "10",
            "--application-close-timeout",
            str(int(config.shutdown_timeout_s)),
            APP,
        ]
    )
