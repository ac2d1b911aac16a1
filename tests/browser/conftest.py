"""Browser fixtures: Debian's headless Chromium driven by Playwright, and a desk to look at.

Playwright downloads no browser here: it drives /usr/bin/chromium (`apt-get install chromium`).
Every page records its console errors and uncaught exceptions; a test ends by asserting none.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, sync_playwright

from tests.e2e.stack import Stack

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
PASSWORD = "correct-horse-battery-staple"  # a throwaway user of a throwaway database


# Module scope, not session: Playwright's sync API runs its own event loop, which must be gone
# before the asyncio tests of later modules start theirs.
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One headless Chromium for the tests of a module."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium")
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@dataclass
class Desk:
    """A running product with the demo desk, and a user who may log in to it."""

    stack: Stack
    port: int
    username: str
    password: str = PASSWORD

    @property
    def url(self) -> str:
        """The dashboard's base URL."""
        return f"http://127.0.0.1:{self.port}"


def create_user(stack: Stack, *, staff: bool = False) -> str:
    """Create a user in the stack's database; its (unique) name."""
    username = f"trader-{uuid.uuid4().hex[:8]}"
    stack.manage(
        "shell",
        "-c",
        "from django.contrib.auth import get_user_model; "
        f"get_user_model().objects.create_user({username!r}, password={PASSWORD!r}, "
        f"is_staff={staff!r})",
    )
    return username


def start_desk(stack: Stack) -> Desk:
    """Start a worker, a web process and the simulator; create a user."""
    stack.start_worker()
    port = stack.start_web()
    stack.start_simulator()
    return Desk(stack=stack, port=port, username=create_user(stack))


@pytest.fixture(scope="module")
def desk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Desk]:
    """The demo desk, shared by the tests of one module."""
    from django.conf import settings

    stack = Stack(redis_url=str(settings.CONFIG.redis_url), log_dir=tmp_path_factory.mktemp("desk"))
    try:
        yield start_desk(stack)
    finally:
        stack.stop()


@dataclass
class PageProblems:
    """Console errors and uncaught exceptions of one page; some may be expected."""

    errors: list[str] = field(default_factory=list)
    allowed: list[re.Pattern[str]] = field(default_factory=list)

    def allow(self, pattern: str) -> None:
        """Expect console errors matching `pattern` (e.g. a refused WebSocket in a restart)."""
        self.allowed.append(re.compile(pattern))

    def unexpected(self) -> list[str]:
        """The errors no `allow` pattern covers."""
        return [e for e in self.errors if not any(p.search(e) for p in self.allowed)]


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    """A fresh browser profile (cookies, localStorage) for one test."""
    ctx = browser.new_context(viewport={"width": 1440, "height": 900})
    ctx.set_default_timeout(20_000)
    yield ctx
    ctx.close()


@pytest.fixture
def problems() -> PageProblems:
    """What the test's pages reported as errors."""
    return PageProblems()


@pytest.fixture
def page(context: BrowserContext, problems: PageProblems) -> Iterator[Page]:
    """A page whose console errors and uncaught exceptions must stay empty."""
    tab = context.new_page()

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            problems.errors.append(f"console: {message.text}")

    tab.on("console", on_console)
    tab.on("pageerror", lambda error: problems.errors.append(f"pageerror: {error}"))
    yield tab
    assert problems.unexpected() == []


def log_in(page: Page, desk: Desk) -> None:
    """Log in through the login page; wait until the dashboard is live."""
    page.goto(f"{desk.url}/")
    page.wait_for_url(re.compile(r"/login\?next=/$"))
    page.fill("#id_username", desk.username)
    page.fill("#id_password", desk.password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{desk.url}/")
    page.wait_for_selector("#conn-state[data-state=live]")
