"""Access control and abuse limits of `/ws` against a real web process (contract section 4).

The web process runs with small limits; each test speaks from its own client address through
X-Forwarded-For (loopback is the trusted proxy, as nginx would be), so that the per-address
limits of one test do not touch another.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed

from tests.e2e.stack import Stack, connect, receive, running_stack

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

LIMITS = {
    "DASHBOARD_WS_MAX_CONNECTIONS_PER_IP": "3",
    "DASHBOARD_WS_MAX_CONNECTIONS_PER_TOKEN": "4",
    "DASHBOARD_WS_CONNECTS_PER_IP_PER_S": "1",
    "DASHBOARD_WS_CONNECTS_BURST": "6",
    "DASHBOARD_AUTH_FAILURES_PER_IP": "3",
}
_addresses = (f"198.51.100.{n}" for n in itertools.count(1))


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A worker and one web process with small limits."""
    with running_stack(tmp_path_factory.mktemp("acl"), **LIMITS) as stack:
        yield stack


@pytest.fixture
def address() -> str:
    """A client address of this test's own."""
    return next(_addresses)


def headers(address: str, **more: str) -> dict[str, str]:
    """Request headers as the proxy would forward them from `address`."""
    return {"X-Forwarded-For": address, **more}


async def close_code(url: str, address: str, **kwargs: Any) -> int:
    """Connect and return the close code the server answers with (fails if it sends data)."""
    code = await close_code_or_none(url, address, **kwargs)
    assert code is not None, "admitted: the server sent a snapshot"
    return code


async def close_code_or_none(url: str, address: str, **kwargs: Any) -> int | None:
    """The close code if the server refuses the connection, None if it sends a snapshot."""
    extra = kwargs.pop("additional_headers", {})
    async with connect(url, additional_headers=headers(address, **extra), **kwargs) as ws:
        try:
            await asyncio.wait_for(ws.recv(), 5)
        except ConnectionClosed:
            return ws.close_code
        return None


async def closed_within(ws: Any, seconds: float) -> int:
    """Read frames until the server closes the socket (at most `seconds`); the close code."""
    try:
        async with asyncio.timeout(seconds):
            while True:
                await ws.recv()
    except ConnectionClosed:
        return int(ws.close_code)


async def admitted(url: str, address: str, **kwargs: Any) -> dict[str, Any]:
    """Connect and return the snapshot (fails if refused)."""
    extra = kwargs.pop("additional_headers", {})
    async with connect(url, additional_headers=headers(address, **extra), **kwargs) as ws:
        return await receive(ws)


def limit_hits(stack: Stack) -> dict[str, float]:
    """dashboard_rate_limit_hits_total by limit, from the web process's /metrics."""
    from urllib.request import urlopen

    from prometheus_client.parser import text_string_to_metric_families

    with urlopen(f"http://127.0.0.1:{stack.web_ports[0]}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        sample.labels["limit"]: sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "dashboard_rate_limit_hits"
        for sample in family.samples
        if sample.name.endswith("_total")
    }


def host(stack: Stack) -> str:
    return f"http://127.0.0.1:{stack.web_ports[0]}"


def session_cookie(stack: Stack, username: str) -> str:
    """A logged-in session of a new user, as the login page would leave in the browser."""
    code = (
        "from django.contrib.auth import get_user_model, SESSION_KEY, BACKEND_SESSION_KEY, "
        "HASH_SESSION_KEY; from django.contrib.sessions.backends.db import SessionStore; "
        f"u = get_user_model().objects.create_user({username!r}, password='pw-123456'); "
        "s = SessionStore(); s[SESSION_KEY] = str(u.pk); "
        "s[BACKEND_SESSION_KEY] = 'django.contrib.auth.backends.ModelBackend'; "
        "s[HASH_SESSION_KEY] = u.get_session_auth_hash(); s.create(); print(s.session_key)"
    )
    return f"sessionid={stack.manage('shell', '-c', code).strip().splitlines()[-1]}"


# --- credentials ----------------------------------------------------------------------------


async def test_no_credentials_close_4401(guarded: Stack, address: str) -> None:
    assert await close_code(guarded.ws_url(auth=False), address) == 4401


@pytest.mark.parametrize(
    "token", ["dsk_wrong", "not-even-a-prefix", "dsk_" + "x" * 300, "%00%01", ""]
)
async def test_a_wrong_token_closes_4401(guarded: Stack, address: str, token: str) -> None:
    assert await close_code(guarded.ws_url(auth=False, token=token), address) == 4401


async def test_a_token_works_as_a_query_parameter_or_a_bearer_header(
    guarded: Stack, address: str
) -> None:
    assert (await admitted(guarded.ws_url(), address))["type"] == "snapshot"
    bearer = {"Authorization": f"Bearer {guarded.token}"}
    snapshot = await admitted(guarded.ws_url(auth=False), address, additional_headers=bearer)
    assert snapshot["type"] == "snapshot"


async def test_expired_and_revoked_tokens_close_4401(guarded: Stack, address: str) -> None:
    expired = guarded.issue_token("expired")
    revoked = guarded.issue_token("revoked")
    guarded.manage(
        "shell",
        "-c",
        "from access.models import ApiToken; from django.utils import timezone; "
        f"ApiToken.objects.filter(name='{guarded.prefix}-expired').update(expires_at=timezone.now())",
    )
    guarded.manage("revoke_token", f"{guarded.prefix}-revoked")
    for key in (expired, revoked):
        assert await close_code(guarded.ws_url(auth=False, token=key), address) == 4401


async def test_a_logged_in_browser_needs_no_token(guarded: Stack, address: str) -> None:
    cookie = session_cookie(guarded, f"{guarded.prefix}-trader")
    same_origin = {"Cookie": cookie}
    snapshot = await admitted(
        guarded.ws_url(auth=False),
        address,
        origin=host(guarded),
        additional_headers=same_origin,
    )
    assert set(snapshot["data"]) == {"market_data", "orders", "positions", "account", "strategies"}
    # without the session, the same page is refused
    assert await close_code(guarded.ws_url(auth=False), address, origin=host(guarded)) == 4401


async def test_logging_out_closes_the_sessions_open_socket_within_5_s(
    guarded: Stack, address: str
) -> None:
    cookie = session_cookie(guarded, f"{guarded.prefix}-leaving")
    async with connect(
        guarded.ws_url(auth=False),
        origin=host(guarded),
        additional_headers=headers(address, Cookie=cookie),
    ) as ws:
        assert (await receive(ws))["type"] == "snapshot"
        # when the user logs out (elsewhere: another tab; logout deletes the session)
        key = cookie.split("=", 1)[1]
        guarded.manage(
            "shell",
            "-c",
            "from django.contrib.sessions.models import Session; "
            f"Session.objects.filter(session_key='{key}').delete()",
        )
        # then the page's socket closes as unauthorized
        assert await closed_within(ws, 5) == 4401


# --- origins --------------------------------------------------------------------------------


async def test_a_foreign_origin_closes_4403_even_with_a_token(guarded: Stack, address: str) -> None:
    for origin in ("https://evil.example", "http://127.0.0.1:1", "null"):
        assert await close_code(guarded.ws_url(), address, origin=origin) == 4403
    # spoofing the Host header to match does not help a page of another origin
    spoofed = {"Host": "evil.example"}
    code = await close_code(
        guarded.ws_url(), address, origin=host(guarded), additional_headers=spoofed
    )
    assert code == 4403


async def test_an_allowed_origin_is_admitted_until_disabled(guarded: Stack, address: str) -> None:
    origin = f"https://{guarded.prefix}.example"
    guarded.manage("allow_origin", origin)
    # a new origin takes effect once the process's lookup cache (access_cache_s, 2 s) expires
    deadline = time.monotonic() + 5
    # (each poll from a new address: the polls must not spend this test's connect budget)
    while await close_code_or_none(guarded.ws_url(), next(_addresses), origin=origin) == 4403:
        assert time.monotonic() < deadline, "the allowed origin was never admitted"
        await asyncio.sleep(0.1)  # polling interval
    async with connect(guarded.ws_url(), origin=origin, additional_headers=headers(address)) as ws:
        assert (await receive(ws))["type"] == "snapshot"
        # when an admin disables the origin, the open socket closes within 5 s
        guarded.manage(
            "shell",
            "-c",
            "from access.models import AllowedOrigin; "
            f"AllowedOrigin.objects.filter(origin='{origin}').update(enabled=False)",
        )
        assert await closed_within(ws, 5) == 4403
    # and new connections from it are refused once the lookup cache (2 s) has expired
    deadline = time.monotonic() + 5
    while await close_code_or_none(guarded.ws_url(), next(_addresses), origin=origin) is None:
        assert time.monotonic() < deadline, "the disabled origin is still admitted"
        await asyncio.sleep(0.1)  # polling interval


async def test_revoking_a_token_closes_its_open_socket_within_5_s(
    guarded: Stack, address: str
) -> None:
    key = guarded.issue_token("to-revoke")
    async with connect(guarded.ws_url(token=key), additional_headers=headers(address)) as ws:
        assert (await receive(ws))["type"] == "snapshot"
        guarded.manage("revoke_token", f"{guarded.prefix}-to-revoke")
        assert await closed_within(ws, 5) == 4401


# --- channel scopes -------------------------------------------------------------------------


async def test_a_scoped_token_gets_its_channels_and_no_others(guarded: Stack, address: str) -> None:
    key = guarded.issue_token("md-only", "--channels", "market_data", "account")
    snapshot = await admitted(guarded.ws_url(token=key), address)
    assert set(snapshot["data"]) == {"market_data", "account"}
    narrowed = await admitted(guarded.ws_url(token=key, channels="market_data:BTCUSDT"), address)
    assert set(narrowed["data"]) == {"market_data"}
    assert await close_code(guarded.ws_url(token=key, channels="orders"), address) == 4403
    async with connect(guarded.ws_url(token=key), additional_headers=headers(address)) as ws:
        await receive(ws)
        await ws.send('{"type":"subscribe","channels":["positions"]}')
        assert await closed_within(ws, 5) == 4403


async def test_narrowing_a_tokens_channels_closes_sockets_taking_others(
    guarded: Stack, address: str
) -> None:
    key = guarded.issue_token("narrowed", "--channels", "market_data", "account")
    name = f"{guarded.prefix}-narrowed"
    async with (
        connect(guarded.ws_url(token=key), additional_headers=headers(address)) as both,
        connect(
            guarded.ws_url(token=key, channels="market_data"), additional_headers=headers(address)
        ) as market_only,
    ):
        await receive(both)
        await receive(market_only)
        # when an admin takes `account` away from the token
        guarded.manage(
            "shell",
            "-c",
            "from access.models import ApiToken; "
            f"ApiToken.objects.filter(name='{name}').update(channels=['market_data'])",
        )
        # then the socket taking `account` closes; the other one stays
        assert await closed_within(both, 5) == 4403
        await market_only.send('{"type":"ping"}')
        frame = await receive(market_only)
        while frame["type"] != "pong":  # updates may come first
            frame = await receive(market_only)


# --- limits ---------------------------------------------------------------------------------


async def test_connections_per_address_are_capped_4429(guarded: Stack, address: str) -> None:
    url = guarded.ws_url()
    before = limit_hits(guarded)
    async with (
        connect(url, additional_headers=headers(address)) as a,
        connect(url, additional_headers=headers(address)) as b,
        connect(url, additional_headers=headers(address)) as c,
    ):
        for ws in (a, b, c):
            await receive(ws)
        assert await close_code(url, address) == 4429
        assert (await admitted(url, next(_addresses)))["type"] == "snapshot"  # others unaffected
    assert limit_hits(guarded)["connections_per_ip"] - before["connections_per_ip"] == 1


async def test_connections_per_token_are_capped_4429(guarded: Stack) -> None:
    key = guarded.issue_token("busy")
    url = guarded.ws_url(token=key)
    before = limit_hits(guarded)
    sockets = [connect(url, additional_headers=headers(next(_addresses))) for _ in range(4)]
    opened = [await s.__aenter__() for s in sockets]
    try:
        for ws in opened:
            await receive(ws)
        assert await close_code(url, next(_addresses)) == 4429
    finally:
        for s in sockets:
            await s.__aexit__(None, None, None)
    assert limit_hits(guarded)["connections_per_token"] - before["connections_per_token"] == 1


async def test_connect_attempts_per_address_are_rate_limited_4429(
    guarded: Stack, address: str
) -> None:
    url = guarded.ws_url(auth=False)  # refused anyway: the attempt itself is what counts
    before = limit_hits(guarded)
    codes = [await close_code(url, address) for _ in range(8)]
    assert codes[:6] == [4401] * 6
    assert codes[6:] == [4429, 4429]
    assert limit_hits(guarded)["connect_rate"] - before["connect_rate"] == 2


async def test_failed_authentications_block_the_address(guarded: Stack, address: str) -> None:
    bad = guarded.ws_url(auth=False, token="dsk_guess")
    before = limit_hits(guarded)
    assert [await close_code(bad, address) for _ in range(3)] == [4401, 4401, 4401]
    # the address is blocked now, even with a good token; others are not
    assert await close_code(guarded.ws_url(), address) == 4429
    assert (await admitted(guarded.ws_url(), next(_addresses)))["type"] == "snapshot"
    assert limit_hits(guarded)["failed_auth"] - before["failed_auth"] == 1


async def test_a_message_flood_is_limited_and_then_closed_while_others_are_served(
    guarded: Stack,
) -> None:
    url = guarded.ws_url()
    before = limit_hits(guarded)
    async with (
        connect(url, additional_headers=headers(next(_addresses))) as flood,
        connect(url, additional_headers=headers(next(_addresses))) as polite,
    ):
        await receive(flood)
        await receive(polite)
        round_trips: list[float] = []

        async def be_polite() -> None:
            for _ in range(20):
                sent = time.monotonic()
                await polite.send('{"type":"ping"}')
                assert (await receive(polite))["type"] == "pong"
                round_trips.append(time.monotonic() - sent)
                await asyncio.sleep(0.05)  # a client's pace, not a wait for a condition

        async def flood_it() -> list[dict[str, Any]]:
            frames: list[dict[str, Any]] = []
            try:
                for _ in range(2000):
                    await flood.send('{"type":"ping"}')
                while True:
                    frames.append(await receive(flood))
            except ConnectionClosed:
                return frames

        frames, _ = await asyncio.gather(flood_it(), be_polite())
        assert flood.close_code == 4429
        kinds = [f.get("code", f["type"]) for f in frames]
        assert kinds.count("pong") == 20  # the burst
        assert kinds.count("rate_limited") >= 1
        assert len(round_trips) == 20
        # served at normal latency during the flood (a loopback round trip is ~1 ms; the bound
        # only catches a server stalled by the flood)
        assert max(round_trips) < 0.5, round_trips
    after = limit_hits(guarded)
    assert after["abuse"] - before["abuse"] == 1
    assert after["messages"] - before["messages"] >= 50  # the refusals that led to the close


async def test_an_oversized_message_closes_1009(guarded: Stack, address: str) -> None:
    async with connect(guarded.ws_url(), additional_headers=headers(address)) as ws:
        await receive(ws)
        await ws.send("x" * 5000)
        assert (await receive(ws))["code"] == "too_large"
        await ws.wait_closed()
        assert ws.close_code == 1009


def test_keys_never_reach_the_web_process_log(guarded: Stack) -> None:
    # every test above connected with keys in the query string
    (web,) = [p for p in guarded.processes if p.args == ["serve"]]
    output = web.output()
    assert '"ws.connect"' in output  # the handshakes were logged ...
    assert guarded.token not in output  # ... without their keys
    # (uvicorn's own handshake line, which carried the query string redacted, is not logged:
    # tests/e2e/test_runbook.py; the redaction of such lines: tests/unit/test_log_redaction.py)


async def test_a_token_that_cannot_be_checked_closes_1013_not_4401(fresh_stack: Stack) -> None:
    # given a web process whose database does not answer (it names a database that is not there)
    db = fresh_stack.env["DASHBOARD_DATABASE_URL"]
    port = fresh_stack.start_web(DASHBOARD_DATABASE_URL=db.rsplit("/", 1)[0] + "/no_such_db")
    # when a client presents a token, then it is told to try again later, not that it is refused
    url = fresh_stack.ws_url(port, auth=False, token="dsk_" + "k" * 43)
    assert await close_code(url, next(_addresses)) == 1013
