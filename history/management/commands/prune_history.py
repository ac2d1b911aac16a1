"""`manage.py prune_history`: delete history older than the retention period, in short batches."""

from __future__ import annotations

from argparse import ArgumentParser
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from history.services import PRUNE_BATCH, history_prune


class Command(BaseCommand):
    help = "Delete history rows whose time is older than --days (default: history_retention_days)."

    def add_arguments(self, parser: ArgumentParser) -> None:
        """Called by manage.py to declare the options."""
        parser.add_argument("--days", type=int, default=None, help="keep this many days")
        parser.add_argument(
            "--batch-size", type=int, default=PRUNE_BATCH, help="rows per DELETE statement"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        """Called by manage.py: prune every history table and print the rows deleted per table."""
        days = (
            options["days"]
            if options["days"] is not None
            else settings.CONFIG.history_retention_days
        )
        if not 1 <= days <= 36_500:
            raise CommandError("--days must be between 1 and 36500")
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1")
        before = timezone.now() - timedelta(days=days)
        deleted = history_prune(before=before, batch_size=options["batch_size"])
        for kind, n in deleted.items():
            self.stdout.write(f"{kind}: {n} rows deleted")
        self.stdout.write(f"total: {sum(deleted.values())} rows older than {before.isoformat()}")
