"""`manage.py simulate`: run the demo trading desk (contract section 2) until interrupted."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from aggregation.simulator.process import run_simulator


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError("must be a positive number")
    return value


class Command(BaseCommand):
    help = (
        "Publish a demo desk's market data, orders, positions, account and strategies to Redis, "
        "and serve the Order/Account gRPC and Strategy HTTP services on their configured ports."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        """Called by manage.py: declare the options, each overriding one setting."""
        parser.add_argument(
            "--symbols", type=_positive_int, help="number of symbols (simulator_symbols)"
        )
        parser.add_argument(
            "--rate", type=_positive_float, help="market-data ticks per second in total"
        )
        parser.add_argument("--duration", type=_positive_float, help="stop after this many s")
        parser.add_argument("--seed", type=int, help="seed of the desk's random numbers")

    def handle(self, *args: Any, **options: Any) -> None:
        """Called by manage.py: run the simulator until the duration ends or a signal."""
        overrides: dict[str, Any] = {}
        if options["symbols"] is not None:
            overrides["simulator_symbols"] = options["symbols"]
        if options["rate"] is not None:
            overrides["simulator_ticks_per_s"] = options["rate"]
        config = settings.CONFIG.model_copy(update=overrides)
        try:
            asyncio.run(run_simulator(config, duration_s=options["duration"], seed=options["seed"]))
        except OSError as exc:  # a port taken by another simulator, Redis refusing at start
            raise CommandError(str(exc)) from exc
