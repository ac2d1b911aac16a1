"""`manage.py demo_access`: the demo desk's admin login and a fresh terminal token (`make run`)."""

from __future__ import annotations

import secrets
from argparse import ArgumentParser
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from access.services import demo_access_ensure


class Command(BaseCommand):
    help = "Create (once) the demo admin user and issue a fresh demo token; print how to log in."

    def add_arguments(self, parser: ArgumentParser) -> None:
        """Called by manage.py to declare the options."""
        parser.add_argument("--username", default="admin")
        parser.add_argument(
            "--password-file",
            type=Path,
            required=True,
            help="where the demo password is kept (created with a random one if missing)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        """Called by manage.py."""
        if not settings.DEBUG and settings.CONFIG.bind_host not in (
            "127.0.0.1",
            "localhost",
            "::1",
        ):
            raise CommandError("demo_access is for a local demo: the server is not on loopback")
        password_file: Path = options["password_file"]
        if not password_file.exists():
            password_file.write_text(secrets.token_urlsafe(12) + "\n")
            password_file.chmod(0o600)
        password = password_file.read_text().strip()
        created, raw_key = demo_access_ensure(username=options["username"], password=password)
        base = f"http://127.0.0.1:{settings.CONFIG.port}"
        self.stdout.write(
            "\n".join(
                [
                    "",
                    "=" * 72,
                    f"Dashboard:  {base}/   (log in as {options['username']} / {password})",
                    f"Admin:      {base}/admin/",
                    f"Terminal:   .venv/bin/python manage.py dashboard_tui --token {raw_key}",
                    f"API:        curl -H 'Authorization: Bearer {raw_key}' {base}/api/v1/state",
                    f"(admin user {'created' if created else 'kept'}; password in {password_file})",
                    "=" * 72,
                    "",
                ]
            )
        )
