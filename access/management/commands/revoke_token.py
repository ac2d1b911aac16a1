"""`manage.py revoke_token NAME`: refuse a token from now on."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from access.models import ApiToken
from access.services import token_revoke


class Command(BaseCommand):
    help = "Revoke an API token."

    def add_arguments(self, parser: ArgumentParser) -> None:
        """Called by manage.py to declare the options."""
        parser.add_argument("name")

    def handle(self, *args: Any, **options: Any) -> None:
        """Called by manage.py: revoke it."""
        try:
            token = token_revoke(name=options["name"])
        except ApiToken.DoesNotExist:
            raise CommandError(f"no token named {options['name']!r}") from None
        self.stdout.write(f"token {token.name!r} revoked at {token.revoked_at:%Y-%m-%dT%H:%M:%SZ}")
