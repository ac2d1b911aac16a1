"""The web dashboard through the shipped nginx on a non-default port: log in, see the desk live.

The login POST passes Django's CSRF origin check only if the proxy passes the Host the browser
used (with its port); the dashboard's `/ws` is admitted only if that Host matches its Origin.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page

from tests.browser.conftest import Desk, create_user, log_in
from tests.e2e.proxy import Nginx, proxied_deployment
from tests.e2e.stack import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.browser]


@pytest.fixture(scope="module")
def proxied_desk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Desk]:
    """The demo desk behind nginx; the desk's URL is nginx's."""
    deployment: tuple[Stack, Nginx]
    with proxied_deployment(tmp_path_factory.mktemp("proxied-desk")) as deployment:
        stack, nginx = deployment
        stack.start_simulator()
        yield Desk(stack=stack, port=nginx.port, username=create_user(stack))


def test_log_in_through_the_proxy_and_see_the_desk_live(page: Page, proxied_desk: Desk) -> None:
    log_in(page, proxied_desk)

    # the live view fills with the simulator's symbols, through nginx's /ws
    page.wait_for_function(
        "document.querySelectorAll('#market tbody tr').length >= 3", timeout=20_000
    )
    assert re.search(r"\d", page.inner_text("#market tbody"))
