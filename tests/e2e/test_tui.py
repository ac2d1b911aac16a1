"""The terminal dashboard against the real server, driven by textual's pilot."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from textual.widgets import DataTable, Static, TabbedContent

from realtime.tui.app import DashboardApp
from tests.e2e.stack import Stack

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
        first_seq, first_updates = app.client.view.seq, app.client.view.updates
        for _ in range(100):
            await pilot.pause(0.05)
            if app.client.view.updates >= first_updates + 3:
                break
        assert app.client.view.seq > first_seq
        status = str(app.query_one("#status", Static).render())
        assert "live" in status
        assert f"seq {app.client.view.seq}"[:8] in status
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
    from realtime.tui.client import DashboardClient

    stack = fresh_stack
    stack.start_worker()
    port = stack.start_web()
    client = DashboardClient(stack.ws_url(port, auth=False, type="tui"), token="dsk_wrong")
    task = asyncio.create_task(client.run())
    try:
        deadline = asyncio.get_running_loop().time() + 10
        while "4401" not in client.view.status:
            assert asyncio.get_running_loop().time() < deadline, client.view.status
            await asyncio.sleep(0.05)  # polling the client's status
        assert "invalid, expired or revoked token" in client.view.status
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
