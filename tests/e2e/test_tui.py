"""The terminal dashboard against the real server, driven by textual's pilot."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest
from rich.text import Text
from textual.pilot import Pilot
from textual.widgets import DataTable, Static, TabbedContent

from realtime.tui.app import DashboardApp
from tests.e2e.stack import Stack, post_notice, wait_quiet

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


async def test_tui_follows_the_live_desk(fresh_stack: Stack) -> None:
    # given the product with the demo desk
    stack = fresh_stack
    stack.start_worker()
    port = stack.start_web()
    stack.start_simulator()
    app = DashboardApp(
        stack.ws_url(port, auth=False, type="tui", format="msgpack"), token=stack.token
    )
    async with app.run_test(size=(160, 40)) as pilot:
        market = app.query_one("#table-market_data", DataTable)
        # when it connects, then every symbol of the desk shows, and keeps updating
        for _ in range(300):
            await pilot.pause(0.05)
            if market.row_count >= 20:
                break
        assert market.row_count == 20
        first_seq, first_updates = app.client.follower.seq, app.client.follower.updates
        for _ in range(100):
            await pilot.pause(0.05)
            if app.client.follower.updates >= first_updates + 3:
                break
        assert app.client.follower.seq > first_seq
        status = str(app.query_one("#status", Static).render())
        assert "live" in status
        assert f"seq {app.client.follower.seq}"[:8] in status
        # and the keys switch views
        await pilot.press("4")
        assert app.query_one(TabbedContent).active == "account"
        for _ in range(200):
            await pilot.pause(0.05)
            if app.query_one("#table-account", DataTable).row_count > 0:
                break
        assert app.query_one("#table-account", DataTable).row_count > 0
        await pilot.press("3")
        assert app.query_one(TabbedContent).active == "orders"
        await pilot.press("r")  # a refresh: the next frame is a snapshot, the state stays whole
        await pilot.pause(0.3)
        assert market.row_count == 20
        await pilot.press("q")
    assert app.return_code in (0, None)


async def test_tui_client_shows_why_the_server_refused_it(fresh_stack: Stack) -> None:
    from dashboard_client import DeskClient

    stack = fresh_stack
    stack.start_worker()
    port = stack.start_web()
    client = DeskClient(stack.ws_url(port, auth=False, type="tui"), token="dsk_wrong")
    task = asyncio.create_task(client.run())
    try:
        deadline = asyncio.get_running_loop().time() + 10
        while "4401" not in client.connection:
            assert asyncio.get_running_loop().time() < deadline, client.connection
            await asyncio.sleep(0.05)  # polling the client's status
        assert "invalid, expired or revoked token" in client.connection
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


HOSTILE = ["[/]", "[link=https://evil.example]click[/link]", "[bold red]RUN", "[@click=quit]x"]


async def test_tui_shows_hostile_strings_as_text(fresh_stack: Stack) -> None:
    # given strategies and an order whose free-text fields carry rich/textual markup
    stack = fresh_stack
    stack.start_worker()
    port = stack.start_web()
    for i, text in enumerate(HOSTILE):
        stack.publish(
            "strategies",
            f"s{i}",
            {"id": f"s{i}", "name": text, "status": text, "note": text},
        )
    stack.publish(
        "orders",
        "MKUSDT",
        {"id": "o1", "symbol": "MKUSDT", "side": "BUY", "quantity": 1.0, "status": "[/]"},
    )
    stack.publish("account", "main", {"total_balance": 1.0, "label": "[/]"})
    wait_quiet(stack)
    app = DashboardApp(stack.ws_url(port, auth=False, type="tui"), token=stack.token)
    async with app.run_test(size=(160, 40)) as pilot:
        table = app.query_one("#table-strategies", DataTable)
        await rows_shown(pilot, table, len(HOSTILE))
        # then the app runs and every string is shown exactly as it was sent
        assert table.row_count == len(HOSTILE)
        names = [_plain(table.get_row_at(i)[1]) for i in range(table.row_count)]
        assert names == HOSTILE
        orders = app.query_one("#table-orders", DataTable)
        assert _plain(orders.get_row_at(0)[7]) == "[/]"
        account = app.query_one("#table-account", DataTable)
        rows = {_plain(account.get_row_at(i)[0]): account.get_row_at(i)[1] for i in range(2)}
        assert _plain(rows["label"]) == "[/]"
        await pilot.press("5")  # rendering the tab must not fail either
        await pilot.pause(0.2)
        assert app.is_running
        await pilot.press("q")
    assert app.return_code in (0, None)


async def test_tui_takes_a_snapshot_over_one_mebibyte(fresh_stack: Stack) -> None:
    # given a desk whose snapshot is ~2 MiB (websockets' default limit is 1 MiB)
    stack = fresh_stack
    stack.start_worker()
    port = stack.start_web()
    pad = "x" * 60_000
    for i in range(36):
        stack.publish(
            "market_data", f"BIG{i:02d}", {"symbol": f"BIG{i:02d}", "last_price": 1.0, "pad": pad}
        )
    wait_quiet(stack)
    app = DashboardApp(stack.ws_url(port, auth=False, type="tui"), token=stack.token)
    async with app.run_test(size=(160, 40)) as pilot:
        market = app.query_one("#table-market_data", DataTable)
        await rows_shown(pilot, market, 36)
        # then the client keeps its connection and shows the whole desk
        assert market.row_count == 36, app.client.connection
        assert app.client.connection == "live"
        await pilot.press("q")


async def rows_shown(pilot: Pilot[None], table: DataTable[Any], count: int) -> None:
    """Let the app run until `table` shows `count` rows, for 10 s at most."""
    for _ in range(200):
        await pilot.pause(0.05)
        if table.row_count == count:
            return


def _plain(value: object) -> str:
    """A cell as the user reads it: its text, whatever renderable holds it."""
    return value.plain if isinstance(value, Text) else str(value)


async def test_tui_shows_a_staff_notice_as_literal_text(fresh_stack: Stack) -> None:
    # given the TUI following a server
    stack = fresh_stack
    stack.start_worker()
    port = stack.start_web()
    staff = stack.issue_token("ops", "--staff")
    app = DashboardApp(
        stack.ws_url(port, auth=False, type="tui", format="msgpack"), token=stack.token
    )
    markup = "[bold red]not bold[/] [link=https://example.invalid]no link[/link] [/]"
    async with app.run_test(size=(160, 40)) as pilot:
        banner = app.query_one("#notice", Static)
        for _ in range(200):
            await pilot.pause(0.05)
            if app.client.last_message_at:  # the snapshot came: the server holds it
                break
        assert app.client.last_message_at
        assert not banner.display
        # when staff send a warning whose text is textual/rich markup
        status, _ = await asyncio.to_thread(
            post_notice, port, {"level": "warning", "text": markup}, staff
        )
        assert status == 202
        for _ in range(200):
            await pilot.pause(0.05)
            if banner.display:
                break
        # then it shows above the tables, character for character, marked as a warning
        assert banner.display
        assert str(banner.render()) == f"WARNING  {markup}"
        assert "black on yellow" in styles(banner)
        assert all("link" not in style and "red" not in style for style in styles(banner))
        # and an info notice replaces it, styled apart
        status, _ = await asyncio.to_thread(
            post_notice, port, {"level": "info", "text": "all clear"}, staff
        )
        assert status == 202
        for _ in range(200):
            await pilot.pause(0.05)
            if str(banner.render()) == "NOTICE  all clear":
                break
        assert str(banner.render()) == "NOTICE  all clear"
        assert "white on dark_blue" in styles(banner)
        await pilot.press("q")


def styles(widget: Static) -> list[str]:
    """The styles of a widget's rendered spans (textual's Content)."""
    return [str(span.style) for span in getattr(widget.render(), "spans", ())]


async def until_shown(pilot: Pilot[None], check: Any, timeout: float = 15) -> None:  # noqa: ASYNC109
    """Let the app run until `check()` holds, for `timeout` seconds at most."""
    for _ in range(int(timeout / 0.05)):
        if check():
            return
        await pilot.pause(0.05)
    assert check()


async def test_tui_shows_a_feed_banner_and_how_it_came_back(fresh_stack: Stack) -> None:
    from dashboard_client import Outcome

    # given the TUI following a web process and its only worker
    stack = fresh_stack
    worker = stack.start_worker()
    port = stack.start_web()
    web = stack.processes[-1]
    app = DashboardApp(stack.ws_url(port, auth=False, type="tui"), token=stack.token)
    async with app.run_test(size=(160, 40)) as pilot:
        feed = app.query_one("#feed", Static)
        status = app.query_one("#status", Static)
        await until_shown(pilot, lambda: app.client.follower.feed is not None)
        assert app.client.follower.feed is not None
        assert app.client.follower.feed.worker_up
        # (the backends are on ports where nothing listens: the banner names them)
        await until_shown(pilot, lambda: feed.display)
        assert "order_service down" in str(feed.render())
        # when the worker dies, then the banner says no updates are coming
        worker.kill()
        await until_shown(pilot, lambda: "worker down" in str(feed.render()))
        assert "white on red" in styles(feed)
        # and when one is back, it says only what is still down
        await asyncio.to_thread(stack.start_worker, "worker-2")
        await until_shown(pilot, lambda: "worker down" not in str(feed.render()))
        assert "live" in str(status.render())
        assert "resynced" not in str(status.render())
        # when the web process restarts, then the client is told, reconnects to the new one, and
        # the status line says how it came back
        web.terminate()
        await asyncio.to_thread(stack.start_web, port=port)
        await until_shown(pilot, lambda: app.client.connects >= 2 and app.client.follower.seq)
        follower = app.client.follower
        expected = Outcome.RECOVERED if follower.recoveries else Outcome.RESYNCED
        await until_shown(pilot, lambda: f"live · {expected.value}" in str(status.render()))
        await pilot.press("q")
