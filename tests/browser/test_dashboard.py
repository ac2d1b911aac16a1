"""The web dashboard in headless Chromium against the real product and the demo desk."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest
from playwright.sync_api import Page, WebSocket

from shared.core.changes import ChangeConflict, apply_changes
from tests.browser.conftest import Desk, create_user, log_in
from tests.e2e.stack import post_notice

pytestmark = [pytest.mark.e2e, pytest.mark.browser, pytest.mark.slow]

LAST_PRICES = "Array.from(document.querySelectorAll('#market tbody tr td:nth-child(2)'))"
# Predicates are functions, not expression strings: the page's CSP (script-src 'self') forbids
# the eval that Playwright needs for a string expression.
SEQ_ABOVE = "(seq) => Number(document.getElementById('seq').textContent) > seq"


def test_anonymous_visitors_are_sent_to_the_login_page(page: Page, desk: Desk) -> None:
    # when an anonymous visitor opens the dashboard
    page.goto(f"{desk.url}/")
    # then they land on the login page, and a wrong password is refused there
    page.wait_for_url(re.compile(r"/login\?next=/$"))
    page.fill("#id_username", desk.username)
    page.fill("#id_password", "not-the-password")
    page.click("button[type=submit]")
    assert page.locator(".form-error").is_visible()
    assert page.locator("#conn-state").count() == 0


def test_prices_change_within_a_second(page: Page, desk: Desk) -> None:
    # given a logged-in trader watching the desk
    log_in(page, desk)
    page.wait_for_function(f"() => {LAST_PRICES}.length >= 20")
    before = page.evaluate(f"{LAST_PRICES}.map((td) => td.textContent)")
    seq_before = int(page.inner_text("#seq"))
    # when the simulator publishes, then a last price changes within 1 s
    page.wait_for_function(
        f"(before) => {LAST_PRICES}.some((td, i) => td.textContent !== before[i])",
        arg=before,
        timeout=1000,
    )
    page.wait_for_function(SEQ_ABOVE, arg=seq_before, timeout=1000)
    assert page.inner_text("#conn-state") == "live"
    assert re.fullmatch(r"\d+ ms", page.inner_text("#latency"))
    # and every panel fills in as the desk trades
    for table in ("positions", "orders", "strategies"):
        page.wait_for_selector(f"#{table} tbody tr")
    page.wait_for_function(
        "() => /\\d/.test(document.querySelector('#account dd[data-field=total_balance]')"
        "?.textContent)"
    )


def test_a_closed_position_disappears(page: Page, desk: Desk) -> None:
    # given a position the simulator does not trade
    log_in(page, desk)
    symbol = "WEBTESTUSDT"
    position: dict[str, Any] = {
        "symbol": symbol,
        "side": "LONG",
        "quantity": 2.0,
        "entry_price": 100.0,
        "mark_price": 101.5,
        "unrealized_pnl": 3.0,
        "realized_pnl": -1.25,
    }
    desk.stack.publish("positions", symbol, position)
    row = page.locator(f'#positions tbody tr[data-symbol="{symbol}"]')
    row.wait_for()
    # then its PnL is shown and coloured
    assert row.locator("td").nth(5).inner_text() == "+3.00"
    assert "up" in (row.locator("td").nth(5).get_attribute("class") or "")
    assert "down" in (row.locator("td").nth(6).get_attribute("class") or "")
    # when it is closed (quantity 0), then its row goes
    desk.stack.publish("positions", symbol, {**position, "quantity": 0.0})
    row.wait_for(state="detached", timeout=2000)


def test_a_market_row_opens_its_chart_with_live_prices(page: Page, desk: Desk) -> None:
    # given the market table
    log_in(page, desk)
    page.wait_for_selector("#market tbody tr[data-symbol=BTCUSDT]")
    # when a row is clicked
    with page.expect_response(
        lambda r: "/api/v1/history" in r.url and "interval=1m" in r.url and "BTCUSDT" in r.url
    ) as candles:
        page.click("#market tbody tr[data-symbol=BTCUSDT]")
    # then the chart fetches that symbol's candles and draws them, then the live price
    assert candles.value.status == 200
    page.wait_for_selector("#chart[data-symbol=BTCUSDT]")
    page.wait_for_function(
        "() => !document.getElementById('chart-note').textContent.startsWith('Loading')"
    )
    page.wait_for_function("() => Number(document.getElementById('chart').dataset.bars) > 0")
    page.wait_for_selector("#chart canvas")
    assert page.locator("#market tbody tr.selected").get_attribute("data-symbol") == "BTCUSDT"


def switch_format(page: Page, sockets: list[WebSocket], fmt: str) -> WebSocket:
    """Pick `fmt` in the header; the WebSocket the page then opens in it."""
    page.select_option("#format-select", fmt)
    page.wait_for_function("(f) => localStorage.getItem('dashboard.format') === f", arg=fmt)
    deadline = time.monotonic() + 10
    while not (sockets and f"format={fmt}" in sockets[-1].url) and time.monotonic() < deadline:
        page.wait_for_timeout(50)
    assert f"format={fmt}" in sockets[-1].url
    return sockets[-1]


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
def test_both_wire_formats_follow_the_desk(page: Page, desk: Desk, fmt: str) -> None:
    # given a logged-in trader who took the other format
    sockets: list[WebSocket] = []
    page.on("websocket", lambda ws: sockets.append(ws))
    log_in(page, desk)
    switch_format(page, sockets, "json" if fmt == "msgpack" else "msgpack")
    page.wait_for_selector("#conn-state[data-state=live]")
    # when they pick this format, then the page reconnects in it and stays live
    socket = switch_format(page, sockets, fmt)
    frames: list[str | bytes] = []
    socket.on("framereceived", lambda frame: frames.append(frame))
    page.wait_for_selector("#conn-state[data-state=live]")
    seq = int(page.inner_text("#seq"))
    page.wait_for_function(SEQ_ABOVE, arg=seq)
    deadline = time.monotonic() + 5  # frame events reach Python after the page has them
    while len(frames) < 2 and time.monotonic() < deadline:
        page.wait_for_timeout(50)
    assert len(frames) >= 2
    assert all(isinstance(f, bytes if fmt == "msgpack" else str) for f in frames)
    # and the choice survives a reload
    page.reload()
    page.wait_for_selector("#conn-state[data-state=live]")
    assert page.input_value("#format-select") == fmt
    assert f"format={fmt}" in sockets[-1].url


def test_log_out(page: Page, desk: Desk) -> None:
    # given a logged-in trader (not staff: no admin link)
    log_in(page, desk)
    assert page.locator("a[href='/admin/']").count() == 0
    # when they log out, then they are at the login page and the dashboard is closed to them
    page.click("form.inline-form button[type=submit]")
    page.wait_for_url(re.compile(r"/login$"))
    page.goto(f"{desk.url}/")
    page.wait_for_url(re.compile(r"/login\?next=/$"))


CASES: list[tuple[dict[str, Any], dict[str, Any]]] = [
    ({"market_data": {}}, {"market_data.BTCUSDT": {"symbol": "BTCUSDT", "last_price": 1.0}}),
    (
        {"market_data": {"A": {"symbol": "A", "last_price": 1.0, "bid_price": 0.9}}},
        {"market_data.A.last_price": 2.0, "market_data.A.bid_price": None},
    ),
    ({"positions": {"A": {"quantity": 1}, "B": {"quantity": 2}}}, {"positions.A": None}),
    ({"orders": [{"id": "1"}]}, {"orders": [{"id": "2"}, {"id": "1"}]}),
    ({"account": {"total_balance": 1.0}}, {"account.balances": {"USDT": 5.0}}),
    ({"account": {}}, {"account": None}),
    ({"positions": {}}, {"positions.GONE.quantity": None}),  # deleting below nothing: done
    ({"positions": {}}, {"positions.MISSING.quantity": 1.0}),  # below a missing parent
    ({"orders": []}, {"orders.x": 1}),  # a list is not an object
    ({"market_data": {}}, {"market_data.__proto__": {"symbol": "__proto__", "last_price": 3}}),
    ({"strategies": {"constructor": {"pnl": 1}}}, {"strategies.constructor.pnl": 2}),
]


def test_the_page_applies_changes_exactly_as_the_core_does(page: Page, desk: Desk) -> None:
    # given the page's applyChanges and the core's apply_changes
    log_in(page, desk)
    for snapshot, changes in CASES:
        # when both apply the same changes to the same snapshot
        try:
            expected: Any = apply_changes(json.loads(json.dumps(snapshot)), changes)
        except ChangeConflict:
            expected = "conflict"
        # (as JSON text both ways: Playwright's own serialisation would lose a "__proto__" key)
        got = json.loads(
            page.evaluate(
                """([snapshot, changes]) => {
                    const P = window.DashboardProtocol;
                    try {
                        const result = P.applyChanges(JSON.parse(snapshot), JSON.parse(changes));
                        return JSON.stringify(result);
                    } catch (e) {
                        if (e instanceof P.ChangeConflict) return '"conflict"';
                        throw e;
                    }
                }""",
                [json.dumps(snapshot), json.dumps(changes)],
            )
        )
        # then they agree
        assert got == expected, (snapshot, changes)


def test_staff_users_get_a_link_to_the_admin(page: Page, desk: Desk) -> None:
    # given a staff user
    staff = Desk(stack=desk.stack, port=desk.port, username=create_user(desk.stack, staff=True))
    # when they log in, then the header links to the admin
    log_in(page, staff)
    page.click("a[href='/admin/']")
    page.wait_for_url(re.compile(r"/admin/$"))


MARKUP = '<b id="injected">bold</b><img src=x id="injected-img"> & <script>alert(1)</script>'


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
def test_a_staff_notice_shows_in_a_banner_as_literal_text(page: Page, desk: Desk, fmt: str) -> None:
    # given a logged-in trader on this format, and no notice yet (a user of its own: the
    # history requests of the page count against a per-user rate)
    trader = Desk(stack=desk.stack, port=desk.port, username=create_user(desk.stack))
    sockets: list[WebSocket] = []
    page.on("websocket", lambda ws: sockets.append(ws))
    log_in(page, trader)
    switch_format(page, sockets, fmt)
    page.wait_for_selector("#conn-state[data-state=live]")
    banner = page.locator("#notice")
    assert banner.is_hidden()
    token = desk.stack.issue_token(f"notice-{fmt}", "--staff")
    # when staff send an info notice holding markup, then it shows as the very text sent
    assert post_notice(desk.port, {"level": "info", "text": MARKUP}, token)[0] == 202
    page.wait_for_selector("#notice[data-level=info]:not([hidden])")
    assert page.locator("#notice-text").text_content() == MARKUP
    assert page.locator("#injected, #injected-img, #notice script").count() == 0
    info_background = banner.evaluate("(node) => getComputedStyle(node).backgroundColor")
    # when they send a warning, then it replaces the info, styled differently
    warning = {"level": "warning", "text": "Exchange gateway restarts in 5 minutes"}
    assert post_notice(desk.port, warning, token)[0] == 202
    page.wait_for_selector("#notice[data-level=warning]")
    assert page.inner_text("#notice-text") == "Exchange gateway restarts in 5 minutes"
    assert page.inner_text("#notice-label").lower() == "warning"
    warning_background = banner.evaluate("(node) => getComputedStyle(node).backgroundColor")
    assert warning_background != info_background
    # and the trader can dismiss it, while the page stays live
    page.click("#notice-dismiss")
    assert banner.is_hidden()
    assert page.inner_text("#conn-state") == "live"
