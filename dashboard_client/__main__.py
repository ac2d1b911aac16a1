"""`python -m dashboard_client URL`: follow a server and print prices as they change.

    python -m dashboard_client ws://127.0.0.1:8086/ws --token "$DASHBOARD_TOKEN" \
        --symbols BTCUSDT,ETHUSDT

One line per change of what it prints: the seq, how the state was reached (live, recovered,
resynced), the last price of each symbol, and a `!` line whenever the feed reports a problem.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from typing import Literal

from dashboard_client.client import DeskClient, DeskState


def line(state: DeskState, symbols: list[str] | None) -> str:
    """The printed line for one state."""
    market = state.data.get("market_data") or {}
    shown = symbols if symbols is not None else sorted(market)
    prices = " ".join(
        f"{symbol} {market[symbol].get('last_price')}" for symbol in shown if symbol in market
    )
    return f"seq {state.seq} [{state.outcome.value}] {prices}"


async def follow(url: str, *, token: str | None, symbols: list[str] | None, fmt: str) -> None:
    """Print until interrupted."""
    channels = ["market_data"] if symbols is None else [f"market_data:{s}" for s in symbols]
    wire: Literal["json", "msgpack"] = "msgpack" if fmt == "msgpack" else "json"
    last, problems = "", ""
    async with DeskClient(url, token=token, fmt=wire, channels=channels) as desk:
        async for state in desk.states():
            now = " · ".join(state.feed.problems) if state.feed is not None else ""
            if now != problems:
                problems = now
                print(f"! {now}" if now else "! feed ok", flush=True)
            text = line(state, symbols)
            if state.data and text != last:
                last = text
                print(text, flush=True)


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments and follow."""
    parser = argparse.ArgumentParser(prog="python -m dashboard_client", description=__doc__)
    parser.add_argument("url", help="the server's /ws URL, e.g. ws://127.0.0.1:8086/ws")
    parser.add_argument(
        "--token",
        default=os.environ.get("DASHBOARD_TOKEN"),
        help="an API token (default: $DASHBOARD_TOKEN)",
    )
    parser.add_argument("--symbols", help="comma-separated symbols (default: every symbol)")
    parser.add_argument("--format", choices=("json", "msgpack"), default="msgpack")
    args = parser.parse_args(argv)
    symbols = args.symbols.split(",") if args.symbols else None
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(follow(args.url, token=args.token, symbols=symbols, fmt=args.format))
    return 0


if __name__ == "__main__":
    sys.exit(main())
