"""`manage.py allow_origin ORIGIN`: let browsers from ORIGIN open the WebSocket."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from access.services import origin_allow


class Command(BaseCommand):
    help = "Allow a browser origin (scheme://host[:port])."

    def add_arguments(self, parser: ArgumentParser) -> None:
        """Called by manage.py to declare the options."""
        parser.add_argument("origin")
        parser.add_argument("--note", default="")

    def handle(self, *args: Any, **options: Any) -> None:
        """Called by manage.py: store it, normalized."""
        try:
            allowed = origin_allow(origin=options["origin"], note=options["note"])
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from None
        self.stdout.write(f"origin {allowed.origin} allowed")
