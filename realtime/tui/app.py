"""The terminal dashboard: market data, positions, orders, account and strategies as tables."""

from __future__ import annotations

import asyncio
import time
from typing import Any, ClassVar

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Footer, Header, Static, TabbedContent, TabPane

from dashboard_client import DeskClient, Notice, Outcome

REDRAW_S = 0.1  # the terminal cadence: redraw at most ten times a second

COLUMNS: dict[str, list[tuple[str, str]]] = {
    "market_data": [
        ("symbol", "Symbol"),
        ("last_price", "Last"),
        ("bid_price", "Bid"),
        ("ask_price", "Ask"),
        ("high_24h", "High 24h"),
        ("low_24h", "Low 24h"),
        ("volume_24h", "Volume 24h"),
    ],
    "positions": [
        ("symbol", "Symbol"),
        ("side", "Side"),
        ("quantity", "Qty"),
        ("entry_price", "Entry"),
        ("mark_price", "Mark"),
        ("unrealized_pnl", "Unrealized"),
        ("realized_pnl", "Realized"),
    ],
    "orders": [
        ("id", "Id"),
        ("symbol", "Symbol"),
        ("side", "Side"),
        ("type", "Type"),
        ("price", "Price"),
        ("quantity", "Qty"),
        ("filled", "Filled"),
        ("status", "Status"),
    ],
    "strategies": [
        ("id", "Id"),
        ("name", "Name"),
        ("status", "Status"),
        ("pnl", "PnL"),
        ("trades", "Trades"),
        ("win_rate", "Win rate"),
    ],
}
TITLES = {
    "market_data": "Market",
    "positions": "Positions",
    "orders": "Orders",
    "account": "Account",
    "strategies": "Strategies",
}


def cell(value: Any) -> Text:
    """One table cell: numbers compact, absent values blank, everything else literal text.

    A `Text`, never a `str`: textual parses strings as markup, so a strategy named `[/]` would
    crash the app and one named `[link=...]` would become a link. Names and extra fields come
    from producers, not from us.
    """
    if value is None:
        return Text("")
    if isinstance(value, float):
        return Text(f"{value:,.6g}" if abs(value) < 1e6 else f"{value:,.0f}")
    return Text(str(value))


class DashboardApp(App[None]):
    """`manage.py dashboard_tui`: follows one server over `/ws` (type=tui, MessagePack)."""

    TITLE = "Dashboard Server"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("1", "show('market_data')", "Market"),
        Binding("2", "show('positions')", "Positions"),
        Binding("3", "show('orders')", "Orders"),
        Binding("4", "show('account')", "Account"),
        Binding("5", "show('strategies')", "Strategies"),
        Binding("r", "refresh_state", "Refresh"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self, url: str, token: str | None = None) -> None:
        super().__init__()
        self.client = DeskClient(url, token=token, on_change=self._mark_dirty)
        self._dirty = True
        self._task: asyncio.Task[None] | None = None

    def compose(self) -> ComposeResult:
        """Called once to build the screen."""
        yield Header()
        yield Static("connecting", id="status")
        yield Static("", id="feed")
        yield Static("", id="notice")
        with TabbedContent(initial="market_data"):
            for name, title in TITLES.items():
                with TabPane(title, id=name):
                    yield DataTable(id=f"table-{name}", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        """Called when the app starts: set up the tables, connect, start redrawing."""
        for name, columns in COLUMNS.items():
            self.query_one(f"#table-{name}", DataTable).add_columns(*(t for _, t in columns))
        self.query_one("#table-account", DataTable).add_columns("Field", "Value")
        self.query_one("#notice", Static).display = False
        self.query_one("#feed", Static).display = False
        self._task = asyncio.get_running_loop().create_task(self.client.run())
        self.set_interval(REDRAW_S, self._redraw)

    async def on_unmount(self) -> None:
        """Called when the app stops: disconnect."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def action_show(self, name: str) -> None:
        """Switch to one table."""
        self.query_one(TabbedContent).active = name

    async def action_refresh_state(self) -> None:
        """Ask the server for a fresh snapshot."""
        await self.client.refresh()

    def _mark_dirty(self) -> None:
        self._dirty = True

    def _redraw(self) -> None:
        client = self.client
        follower = client.follower
        age = time.monotonic() - client.last_message_at if client.last_message_at else None
        stale = age is not None and age > 3 * REDRAW_S * 10
        freshness = "" if age is None else f" · last message {age:.1f} s ago"
        # after a reconnect: whether the missed updates were replayed or a snapshot replaced all
        how = (
            f" · {follower.outcome.value}"
            if follower.outcome in (Outcome.RECOVERED, Outcome.RESYNCED)
            else ""
        )
        self.query_one("#status", Static).update(  # Text: a close reason is the server's words
            Text(
                f"{client.connection}{how}{' · STALE' if stale else ''} · seq {follower.seq}"
                f" · updates {follower.updates}{freshness}"
            )
        )
        if not self._dirty:
            return
        self._dirty = False
        self._show_feed()
        if follower.notice is not None:
            self._show_notice(follower.notice)
        state = follower.data or {}
        for name, columns in COLUMNS.items():
            value = state.get(name) or ({} if name != "orders" else [])
            rows = value if isinstance(value, list) else [value[k] for k in sorted(value)]
            table = self.query_one(f"#table-{name}", DataTable)
            table.clear()
            for record in rows:
                table.add_row(*(cell(record.get(key)) for key, _ in columns))
        account = self.query_one("#table-account", DataTable)
        account.clear()
        for key, value in sorted((state.get("account") or {}).items()):
            shown = (
                value
                if not isinstance(value, dict)
                else ", ".join(
                    f"{asset} {cell(amount).plain}" for asset, amount in sorted(value.items())
                )
            )
            account.add_row(Text(key), cell(shown))

    def _show_feed(self) -> None:
        """A banner white on red while the feed's status says the worker or a backend is down."""
        feed = self.client.follower.feed
        problems = feed.problems if feed is not None else []
        banner = self.query_one("#feed", Static)
        banner.display = bool(problems)
        if problems:
            banner.update(
                Text.assemble(("FEED", "bold"), "  ", " · ".join(problems), style="white on red")
            )

    def _show_notice(self, notice: Notice) -> None:
        """The last staff notice, above the tables: a warning black on yellow.

        A `Text`: the notice is what a staff member typed, shown as it reads, never as markup.
        """
        warning = notice.level == "warning"
        banner = self.query_one("#notice", Static)
        banner.update(
            Text.assemble(
                ("WARNING" if warning else "NOTICE", "bold"),
                "  ",
                notice.text,
                style="black on yellow" if warning else "white on dark_blue",
            )
        )
        banner.display = True
