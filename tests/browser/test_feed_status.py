"""The dashboard's feed banner (status frames), its continuity label and its resume logic."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page

from support.processes import wait_until
from tests.browser.conftest import Desk, PageProblems, create_user, log_in, start_desk
from tests.e2e.stack import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.browser, pytest.mark.slow]

# Where the "feed down" screenshot goes: docs/img/ when asked (DASHBOARD_SCREENSHOTS=docs/img),
# else the test's own directory (it is taken either way: the screenshot is part of the test).
SCREENSHOTS = os.environ.get("DASHBOARD_SCREENSHOTS")


def test_a_dead_worker_shows_the_feed_down_banner_until_it_is_back(
    page: Page, tmp_path: Path
) -> None:
    from django.conf import settings

    stack = Stack(redis_url=str(settings.CONFIG.redis_url), log_dir=tmp_path)
    try:
        # given a trader watching the demo desk, its backends served by the simulator (started
        # first, so that the worker's first poll finds them up)
        simulator = stack.start_simulator()
        wait_until(
            lambda: simulator.output().count("server listening") == 3,
            timeout=30,
            what="the simulator's backends",
        )
        worker = stack.start_worker()
        desk = Desk(stack=stack, port=stack.start_web(), username=create_user(stack))
        log_in(page, desk)
        page.wait_for_function("() => document.querySelectorAll('#market tbody tr').length >= 20")
        page.wait_for_selector("#feed-banner", state="hidden", timeout=10_000)
        # when the worker is killed
        worker.kill()
        # then within its heartbeat's lease and one reading a banner says the feed is down
        page.wait_for_selector("#feed-banner[data-down=worker]:not([hidden])", timeout=8000)
        assert page.inner_text("#feed-label").lower() == "feed down"
        assert "no updates are coming" in page.inner_text("#feed-text")
        assert page.get_attribute("#feed-banner", "role") == "alert"
        assert page.inner_text("#conn-state") == "live"  # the link itself is fine
        shot = Path(SCREENSHOTS or tmp_path) / "feed-down.png"
        page.wait_for_timeout(300)  # let the stale warning and the banner settle for the picture
        page.screenshot(path=str(shot), clip={"x": 0, "y": 0, "width": 1440, "height": 560})
        assert shot.stat().st_size > 10_000
        # when a worker runs again, then the banner goes
        stack.start_worker(name="worker-2")
        page.wait_for_selector("#feed-banner", state="hidden", timeout=10_000)
    finally:
        stack.stop()


def test_backends_that_do_not_answer_are_named_in_the_banner(page: Page, tmp_path: Path) -> None:
    from django.conf import settings

    stack = Stack(redis_url=str(settings.CONFIG.redis_url), log_dir=tmp_path)
    try:
        # given a worker whose backends are not there (no simulator serves their ports)
        stack.start_worker()
        port = stack.start_web()
        log_in(page, Desk(stack=stack, port=port, username=create_user(stack)))
        # then the banner names each of them, styled apart from a dead worker
        page.wait_for_selector("#feed-banner[data-down=backends]:not([hidden])", timeout=10_000)
        assert page.inner_text("#feed-label").lower() == "backend down"
        text = page.inner_text("#feed-text")
        for backend in ("account_service", "order_service", "strategy_service"):
            assert backend in text
    finally:
        stack.stop()


def test_a_web_restart_reconnects_on_the_shutdown_frame_and_says_resynced(
    page: Page, problems: PageProblems, tmp_path: Path
) -> None:
    from django.conf import settings

    stack = Stack(redis_url=str(settings.CONFIG.redis_url), log_dir=tmp_path)
    try:
        desk = start_desk(stack)
        sockets: list[str] = []
        page.on("websocket", lambda ws: sockets.append(ws.url))
        log_in(page, desk)
        assert page.locator("#continuity").is_hidden()
        web = stack.processes[1]
        problems.allow(r"WebSocket connection to 'ws://127\.0\.0\.1:\d+/ws\?.*' failed")
        problems.allow(r"Failed to load resource: net::ERR_CONNECTION_REFUSED")
        # when the web process stops (a shutdown frame, then 1001) and a new one comes up
        web.terminate()
        stack.start_web(port=desk.port)
        # then the page is live again and says how it came back
        page.wait_for_selector("#continuity:not([hidden])", timeout=30_000)
        page.wait_for_selector("#conn-state[data-state=live]")
        outcome = page.get_attribute("#continuity", "data-outcome")
        assert outcome in ("recovered", "resynced")
        assert page.inner_text("#continuity").startswith(str(outcome))
        later = sockets[1:]
        assert later
        # a resume names both its seq and its epoch (contract 4.1), never one alone
        assert all(("since=" in url) == ("epoch=" in url) for url in later)
    finally:
        stack.stop()


FRAMES: list[tuple[str, list[dict[str, Any]], dict[str, Any]]] = [
    (
        "base_seq at or below the state applies, past it is a gap",
        [
            {"type": "snapshot", "seq": 10, "epoch": "e1", "data": {"market_data": {}}},
            {
                "type": "update",
                "seq": 12,
                "base_seq": 9,
                "epoch": "e1",
                "changes": {"market_data.A": {"last_price": 1}},
            },
            {
                "type": "update",
                "seq": 14,
                "base_seq": 13,
                "epoch": "e1",
                "changes": {"market_data.B": {"last_price": 2}},
            },
            {
                "type": "update",
                "seq": 15,
                "base_seq": 14,
                "epoch": "e1",
                "changes": {"market_data.C": {"last_price": 3}},
            },
        ],
        {
            "actions": ["render", "render", "refresh", "ignore"],
            "seq": 12,
            "outcome": "live",
            "data": {"market_data": {"A": {"last_price": 1}}},
            "gaps": 1,
        },
    ),
    (
        "an update of another epoch is a gap",
        [
            {"type": "snapshot", "seq": 10, "epoch": "e1", "data": {}},
            {"type": "update", "seq": 11, "base_seq": 10, "epoch": "e2", "changes": {"x": 1}},
        ],
        {"actions": ["render", "refresh"], "seq": 10, "outcome": "live", "data": {}, "gaps": 1},
    ),
    (
        "a resume recovered keeps the state; the replay applies",
        [
            {"type": "snapshot", "seq": 10, "epoch": "e1", "data": {"x": 0}},
            "RESUME",
            {"type": "recovered", "since": 10, "seq": 11, "epoch": "e1"},
            {"type": "update", "seq": 11, "base_seq": 10, "epoch": "e1", "changes": {"x": 1}},
        ],
        {
            "actions": ["render", "recovered", "render"],
            "seq": 11,
            "outcome": "recovered",
            "data": {"x": 1},
            "gaps": 0,
        },
    ),
    (
        "a resume refused is a resync with the reason",
        [
            {"type": "snapshot", "seq": 10, "epoch": "e1", "data": {"x": 0}},
            "RESUME",
            {
                "type": "snapshot",
                "seq": 90,
                "epoch": "e2",
                "data": {"y": 1},
                "recovered": False,
                "reason": "epoch_changed",
            },
        ],
        {
            "actions": ["render", "render"],
            "seq": 90,
            "outcome": "resynced",
            "reason": "epoch_changed",
            "data": {"y": 1},
            "gaps": 0,
        },
    ),
    (
        "a recovered marker for another seq is not trusted",
        [
            {"type": "snapshot", "seq": 10, "epoch": "e1", "data": {}},
            "RESUME",
            {"type": "recovered", "since": 9, "seq": 11, "epoch": "e1"},
        ],
        {"actions": ["render", "refresh"], "seq": 10, "outcome": "live", "data": {}, "gaps": 1},
    ),
    (
        "status and shutdown",
        [
            {"type": "snapshot", "seq": 1, "epoch": "e1", "data": {}},
            {
                "type": "status",
                "seq": 1,
                "epoch": "e1",
                "worker": {"up": True, "heartbeat_age_s": 0.1},
                "backends": {"order_service": False, "account_service": True},
            },
            {"type": "shutdown", "reconnect_after_ms": 420},
        ],
        {
            "actions": ["render", "status", "reconnect:420"],
            "seq": 1,
            "outcome": "live",
            "data": {},
            "gaps": 0,
            "problems": ["order_service"],
        },
    ),
]

RUN = """([frames]) => {
    const P = window.DashboardProtocol;
    const s = new P.DashboardState();
    s.reset(false);
    const actions = [];
    for (const frame of JSON.parse(frames)) {
        if (frame === "RESUME") { s.reset(s.resumeQuery() !== null); continue; }
        const r = s.receive(frame);
        actions.push(r.action === "reconnect" ? `reconnect:${r.afterMs}` : r.action);
    }
    return JSON.stringify({actions, seq: s.seq, outcome: s.outcome, reason: s.reason,
        data: s.data, gaps: s.gaps, problems: P.feedProblems(s.feed)});
}"""


def test_the_pages_continuity_logic_on_crafted_frames(page: Page, desk: Desk) -> None:
    log_in(page, desk)
    for name, frames, expected in FRAMES:
        got = json.loads(page.evaluate(RUN, [json.dumps(frames)]))
        for key, value in expected.items():
            assert got[key] == value, (name, key, got)
