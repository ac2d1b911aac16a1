"""Screenshot the live web dashboard: log in, pick a symbol, wait for data, save a PNG.

Run against a running product (`make run`, with the demo desk), e.g.

    .venv/bin/python scripts/screenshot.py --url http://127.0.0.1:8086/ \\
        --username trader --password ... --output docs/img/dashboard.png

Uses Playwright with Debian's chromium (`apt-get install chromium`); it downloads no browser.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from playwright.sync_api import Page, sync_playwright

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def log_in(page: Page, base_url: str, username: str, password: str) -> None:
    """Log in through the login page and wait for the dashboard to be live."""
    page.goto(base_url.rstrip("/") + "/login")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("button[type=submit]")
    page.wait_for_selector("#conn-state[data-state=live]", timeout=20_000)


def capture(
    *, base_url: str, username: str, password: str, output: Path, symbol: str | None
) -> None:
    """Log in, open a symbol's chart, let a few seconds of updates arrive, save the page."""
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            log_in(page, base_url, username, password)
            page.wait_for_selector("#market tbody tr[data-symbol]")
            row = (
                page.locator(f'#market tbody tr[data-symbol="{symbol}"]')
                if symbol
                else page.locator("#market tbody tr[data-symbol]").first
            )
            row.click()
            page.wait_for_function(
                "() => Number(document.getElementById('chart').dataset.bars) > 0", timeout=20_000
            )
            page.wait_for_timeout(4000)  # let candles, orders and flashes fill in
            output.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(output), full_page=True)
        finally:
            browser.close()


def main() -> int:
    """Parse the arguments and take the screenshot."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8086/")
    parser.add_argument("--username", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--symbol", help="the symbol whose chart to show (default: the first)")
    parser.add_argument("--output", type=Path, default=Path("docs/img/dashboard.png"))
    args = parser.parse_args()
    capture(
        base_url=args.url,
        username=args.username,
        password=args.password,
        output=args.output,
        symbol=args.symbol,
    )
    print(f"saved {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
