"""`manage.py dashboard_tui`: the terminal dashboard."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from realtime.tui.app import DashboardApp


class Command(BaseCommand):
    help = "Show the live dashboard in the terminal (keys: 1-5 views, r refresh, q quit)."

    def add_arguments(self, parser: ArgumentParser) -> None:
        """Called by manage.py to declare the options."""
        parser.add_argument("--url", help="the server's /ws URL (default: this configuration's)")
        parser.add_argument("--token", help="an API token (Authorization: Bearer)")

    def handle(self, *args: Any, **options: Any) -> None:
        """Called by manage.py: run the app until the user quits."""
        config = settings.CONFIG
        base = options["url"] or f"ws://127.0.0.1:{config.port}/ws"
        separator = "&" if "?" in base else "?"
        DashboardApp(f"{base}{separator}type=tui&format=msgpack", token=options["token"]).run()
