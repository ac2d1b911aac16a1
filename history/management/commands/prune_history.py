"""`manage.py prune_history`: drop the history days older than the retention period, whole."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from history.partitions import PRUNE_BATCH, history_prune, retention_cutoff


class Command(BaseCommand):
    help = (
        "Drop the history days wholly older than --days (default: history_retention_days): "
        "one partition per table and day; then the minute candles of those days."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        """Called by manage.py to declare the options."""
        parser.add_argument("--days", type=int, default=None, help="keep this many days")
        parser.add_argument(
            "--batch-size", type=int, default=PRUNE_BATCH, help="candles per DELETE statement"
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
        keep_from = retention_cutoff(timezone.now(), days)
        dropped = history_prune(keep_from=keep_from, batch_size=options["batch_size"])
        candles = dropped.pop("candles_1m")
        for kind, n in dropped.items():
            self.stdout.write(f"{kind}: {n} day partitions dropped")
        self.stdout.write(f"candles_1m: {candles} rows deleted")
        self.stdout.write(f"kept: the days from {keep_from.isoformat()} (UTC) on")
