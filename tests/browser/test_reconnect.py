"""The web dashboard across a restart of the web process it is connected to."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Page

from tests.browser.conftest import PageProblems, log_in, start_desk
from tests.browser.test_dashboard import SEQ_ABOVE
from tests.e2e.stack import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.browser, pytest.mark.slow]


def test_a_web_restart_shows_reconnecting_then_live_data(
    page: Page, problems: PageProblems, tmp_path: Path
) -> None:
    from django.conf import settings

    stack = Stack(redis_url=str(settings.CONFIG.redis_url), log_dir=tmp_path)
    try:
        # given a trader watching the desk through one web process
        desk = start_desk(stack)
        log_in(page, desk)
        web = stack.processes[1]  # worker, web, simulator: in the order start_desk starts them
        assert web.args == ["serve"]
        # when that process stops
        # (while it is down, Chromium logs each refused WebSocket as a console error)
        problems.allow(r"WebSocket connection to 'ws://127\.0\.0\.1:\d+/ws\?.*' failed")
        problems.allow(r"Failed to load resource: net::ERR_CONNECTION_REFUSED")
        web.terminate()
        # then the page says it is reconnecting
        page.wait_for_selector("#conn-state[data-state=reconnecting]", timeout=5000)
        page.wait_for_selector("#stale:not([hidden])")
        seq = int(page.inner_text("#seq"))
        # when a new web process comes up on the same port
        stack.start_web(port=desk.port)
        # then the page resyncs from a fresh snapshot and follows the desk again
        page.wait_for_selector("#conn-state[data-state=live]", timeout=30_000)
        page.wait_for_function(SEQ_ABOVE, arg=seq)
        assert page.locator("#market tbody tr").count() == 20
    finally:
        stack.stop()
