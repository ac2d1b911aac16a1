"""`manage.py issue_token NAME`: create an API token; the raw key is the last line printed."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import IntegrityError

from access.services import token_issue


class Command(BaseCommand):
    help = "Create an API token and print its key (shown once, never stored)."

    def add_arguments(self, parser: ArgumentParser) -> None:
        """Called by manage.py to declare the options."""
        parser.add_argument("name")
        parser.add_argument("--staff", action="store_true", help="may use the staff endpoints")
        parser.add_argument(
            "--channels",
            nargs="+",
            default=[],
            help="limit to these channels, each optionally narrowed: market_data:BTCUSDT",
        )
        parser.add_argument(
            "--owner", help="the user it belongs to: deactivating or deleting them disables it"
        )
        parser.add_argument("--no-history", action="store_true", help="no history API access")
        parser.add_argument("--expires-days", type=int, default=None)

    def handle(self, *args: Any, **options: Any) -> None:
        """Called by manage.py: issue the token, print the key last."""
        owner = None
        if options["owner"] is not None:
            owner = get_user_model().objects.filter(username=options["owner"]).first()
            if owner is None:
                raise CommandError(f"no user named {options['owner']!r}")
        try:
            token, raw_key = token_issue(
                name=options["name"],
                owner=owner,
                channels=options["channels"],
                staff=options["staff"],
                history=not options["no_history"],
                expires_days=options["expires_days"],
            )
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from None
        except IntegrityError:
            raise CommandError(f"a token named {options['name']!r} exists already") from None
        self.stdout.write(f"token {token.name!r} created ({token.prefix}…); its key:")
        self.stdout.write(raw_key)
