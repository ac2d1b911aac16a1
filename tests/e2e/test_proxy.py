"""The deployment as shipped: deploy/nginx/nginx.conf in front of two web processes.

Clients speak to nginx only, from loopback addresses of their own (127.0.0.2, 127.0.0.3), as
clients on other hosts would: what the web processes' per-address limits see must be each
client's own address (nginx's X-Forwarded-For, believed from the proxy only), never the
proxy's, and never what a client claims in a header of its own.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from tests.e2e.proxy import Nginx, proxied_deployment
from tests.e2e.stack import Stack, connect, receive

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ATTACKER = "127.0.0.2"
BYSTANDER = "127.0.0.3"
# Low enough that the attacker's ten failures lock it out on both web processes, however
# nginx shares them out (least_conn).
FAILURES_ALLOWED = 4


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, Nginx]]:
    """The shipped nginx before two web processes and a worker."""
    limits = {"DASHBOARD_AUTH_FAILURES_PER_IP": str(FAILURES_ALLOWED)}
    with proxied_deployment(tmp_path_factory.mktemp("proxy"), **limits) as deployment:
        yield deployment


def client(nginx: Nginx, address: str) -> httpx.Client:
    """An HTTP client whose connections come from `address`."""
    return httpx.Client(
        base_url=nginx.url, transport=httpx.HTTPTransport(local_address=address), timeout=10
    )


def ws_url(nginx: Nginx, token: str) -> str:
    return f"{nginx.url.replace('http', 'ws')}/ws?token={token}"


async def first_frame_or_close(url: str, address: str) -> dict[str, object] | int:
    """The first frame the server sends to a socket from `address`, or its close code."""
    async with connect(url, local_addr=(address, 0)) as ws:
        try:
            return await receive(ws)
        except ConnectionClosed:
            assert ws.close_code is not None
            return ws.close_code


async def test_websocket_through_the_proxy_streams_the_desk(
    proxied: tuple[Stack, Nginx],
) -> None:
    stack, nginx = proxied
    async with connect(ws_url(nginx, stack.token), local_addr=(BYSTANDER, 0)) as ws:
        snapshot = await receive(ws)
        assert snapshot["type"] == "snapshot"
        stack.publish("market_data", "PROXYUSD", {"symbol": "PROXYUSD", "last_price": 7.5})
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            frame = await receive(ws)
            if frame["type"] == "update" and "PROXYUSD" in str(frame["changes"]):
                break
        else:
            pytest.fail("no update for the published tick came through the proxy")


async def test_bad_tokens_lock_out_their_own_client_only(proxied: tuple[Stack, Nginx]) -> None:
    # given: ten wrong tokens from the attacker, each claiming to come from the bystander
    stack, nginx = proxied
    spoofed = {"X-Forwarded-For": BYSTANDER}
    with client(nginx, ATTACKER) as attacker:
        statuses = [
            attacker.get(
                "/api/v1/state", headers={"Authorization": f"Bearer dsk_wrong{n}", **spoofed}
            ).status_code
            for n in range(10)
        ]
        # then: the attacker's own address is locked out, even with the good token
        assert statuses[0] == 401
        assert statuses[-1] == 429
        good = {"Authorization": f"Bearer {stack.token}"}
        assert [attacker.get("/api/v1/state", headers=good).status_code for _ in range(4)] == [
            429
        ] * 4
    assert await first_frame_or_close(ws_url(nginx, stack.token), ATTACKER) == 4429

    # and: the bystander is served on both web processes, over HTTP and /ws
    with client(nginx, BYSTANDER) as bystander:
        served = [bystander.get("/api/v1/state", headers=good).status_code for _ in range(4)]
    assert served == [200] * 4
    frames = await asyncio.gather(
        *(first_frame_or_close(ws_url(nginx, stack.token), BYSTANDER) for _ in range(2))
    )
    assert [f["type"] if isinstance(f, dict) else f for f in frames] == ["snapshot"] * 2


def login_status(port: int, origin: str) -> int:
    """The status of a login POST (wrong password) whose browser says it came from `origin`."""
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as browser:
        form = browser.get("/login")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text)
        assert token is not None, form.text[:500]
        return browser.post(
            "/login",
            data={"csrfmiddlewaretoken": token[1], "username": "nobody", "password": "wrong"},
            headers={"Origin": origin},
        ).status_code


def test_csrf_trusted_origins_admit_a_proxy_that_rewrites_host(fresh_stack: Stack) -> None:
    # A proxy that passes its own Host: the browser's Origin names a host Django never sees.
    origin = "https://desk.example"
    plain = fresh_stack.start_web("plain")
    trusting = fresh_stack.start_web("trusting", DASHBOARD_CSRF_TRUSTED_ORIGINS=origin)

    assert login_status(plain, origin) == 403  # CSRF: origin not trusted
    assert login_status(trusting, origin) == 200  # the form again, with "wrong password"
    assert login_status(trusting, "https://evil.example") == 403


def test_forwarded_for_from_a_client_that_is_not_the_proxy_is_ignored(
    proxied: tuple[Stack, Nginx],
) -> None:
    # given: a client reaching a web process directly, claiming to be another client
    stack, _ = proxied
    direct, claimed = "127.0.0.6", "127.0.0.7"
    web = stack.web_ports[0]
    with httpx.Client(
        base_url=f"http://127.0.0.1:{web}",
        transport=httpx.HTTPTransport(local_address=direct),
        timeout=10,
    ) as attacker:
        for n in range(10):
            attacker.get(
                "/api/v1/state",
                headers={"Authorization": f"Bearer dsk_wrong{n}", "X-Forwarded-For": claimed},
            )
        # then: its own address is the one locked out
        good = {"Authorization": f"Bearer {stack.token}"}
        assert attacker.get("/api/v1/state", headers=good).status_code == 429
    # and the client it named is served by that same web process
    with httpx.Client(
        base_url=f"http://127.0.0.1:{web}",
        transport=httpx.HTTPTransport(local_address=claimed),
        timeout=10,
    ) as named:
        assert named.get("/api/v1/state", headers=good).status_code == 200
