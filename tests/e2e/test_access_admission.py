"""`/ws` admission against a real web process: what is checked before any lookup, the Host
header, symbol-narrowed tokens, and tokens of a deactivated owner.

The web process runs with a connect rate that does not refill within a test (so the flood tests
are exact); each test speaks from its own address through X-Forwarded-For.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import os
from collections.abc import Iterator

import psycopg
import pytest

from tests.e2e.stack import Stack, connect, receive, running_stack
from tests.e2e.test_access_ws import close_code, close_code_or_none, closed_within, headers

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

BURST = 4
LIMITS = {
    "DASHBOARD_WS_CONNECTS_BURST": str(BURST),
    # One attempt per 1,000 s: the bucket does not refill during a test, so counts are exact.
    "DASHBOARD_WS_CONNECTS_PER_IP_PER_S": "0.001",
    "DASHBOARD_AUTH_FAILURES_PER_IP": "2",
}
_addresses = (f"198.51.100.{n}" for n in itertools.count(101))
FLOOD = 20  # handshakes in each flood; each must be refused without a lookup


@pytest.fixture(scope="module")
def admission(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A worker and one web process with an exact connect budget."""
    with running_stack(tmp_path_factory.mktemp("adm"), **LIMITS) as stack:
        yield stack


@pytest.fixture
def address() -> str:
    """A client address of this test's own."""
    return next(_addresses)


class LockedCredentialTables:
    """Hold an exclusive lock on the sessions and tokens tables: any query on them waits.

    What makes "no lookup before the per-address limits" visible from outside: a handshake that
    queried either table would hang until the lock is released, instead of being refused.
    """

    def __init__(self, database_url: str) -> None:
        self.connection = psycopg.connect(database_url)

    def __enter__(self) -> LockedCredentialTables:
        self.connection.execute(
            "LOCK TABLE django_session, access_apitoken IN ACCESS EXCLUSIVE MODE"
        )
        return self

    def __exit__(self, *exc: object) -> None:
        self.connection.rollback()  # releases the lock; waiting queries carry on
        self.connection.close()


async def flood(url: str, address: str, **extra: str) -> list[int]:
    """`FLOOD` handshakes from `address`; the close code of each (5 s deadline for all)."""
    async with asyncio.timeout(5):
        return [await close_code(url, address, additional_headers=extra) for _ in range(FLOOD)]


# --- admission order ------------------------------------------------------------------------


async def test_a_flood_over_the_connect_rate_is_refused_before_any_session_or_token_lookup(
    admission: Stack, address: str
) -> None:
    # given an address that spent its connect burst (without credentials: refused, no lookup)
    for _ in range(BURST):
        assert await close_code(admission.ws_url(auth=False), address) == 4401
    with LockedCredentialTables(admission.env["DASHBOARD_DATABASE_URL"]):
        # when it floods handshakes carrying a bogus session cookie and a token
        codes = await flood(
            admission.ws_url(auth=False, token="dsk_" + "f" * 43),
            address,
            Cookie="sessionid=" + "b" * 32,
        )
    # then every one is refused by the per-address limit, none waited for the locked tables
    assert codes == [4429] * FLOOD


async def test_a_flood_after_failed_authentications_is_refused_before_any_lookup(
    admission: Stack, address: str
) -> None:
    # given an address blocked by failed authentications (2 bad tokens)
    bad = admission.ws_url(auth=False, token="dsk_guess")
    assert [await close_code(bad, address) for _ in range(2)] == [4401, 4401]
    with LockedCredentialTables(admission.env["DASHBOARD_DATABASE_URL"]):
        # when it floods with a session cookie, then each is refused without a lookup
        codes = await flood(admission.ws_url(auth=False), address, Cookie="sessionid=" + "c" * 32)
    assert codes == [4429] * FLOOD


async def test_a_session_cookie_is_still_looked_up_once_the_limits_pass(
    admission: Stack, address: str
) -> None:
    # a bogus session is no login: refused as unauthenticated (after the lookup)
    code = await close_code(
        admission.ws_url(auth=False), address, additional_headers={"Cookie": "sessionid=bogus"}
    )
    assert code == 4401


# --- the Host header ------------------------------------------------------------------------


async def handshake(stack: Stack, address: str, hosts: list[str]) -> int | None:
    """Open `/ws` with exactly these Host headers (a WebSocket library always adds its own).

    Returns the close code the server answers with, the HTTP status if it refuses to upgrade,
    or None if it is admitted (its first frame is data).
    """
    reader, writer = await asyncio.open_connection("127.0.0.1", stack.web_ports[0])
    try:
        request = (
            f"GET /ws?token={stack.token} HTTP/1.1\r\n"
            + "".join(f"Host: {host}\r\n" for host in hosts)
            + "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
            + f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\n"
            + f"X-Forwarded-For: {address}\r\n\r\n"
        )
        writer.write(request.encode("latin-1"))
        async with asyncio.timeout(5):
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            if status != 101:
                return status
            first, length = await reader.readexactly(2)
            payload = await reader.readexactly(length) if length < 126 else b""
        if first & 0x0F != 0x8:  # not a close frame: data, so admitted
            return None
        return int.from_bytes(payload[:2], "big")
    finally:
        writer.close()


@pytest.mark.parametrize(
    "hosts",
    [
        ["evil.example"],
        ["127.0.0.1.evil.example"],
        ["localhost.evil.example:80"],
        ["127.0.0.1:notaport"],
        ["127.0.0.1@evil.example"],
        ["127.0.0.1", "evil.example"],  # two Host headers: which one the page meant is unknown
        ["evil.example", "127.0.0.1"],
    ],
)
async def test_a_host_not_in_allowed_hosts_closes_4403(
    admission: Stack, address: str, hosts: list[str]
) -> None:
    assert await handshake(admission, address, hosts) == 4403


async def test_a_handshake_without_a_host_is_refused(admission: Stack, address: str) -> None:
    code = await handshake(admission, address, [])
    assert code in (400, 4403)  # the HTTP server may refuse it before the application does


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1:1", "LOCALHOST:8086", "[::1]:8086"])
async def test_allowed_hosts_are_admitted_with_any_port(admission: Stack, host: str) -> None:
    assert await handshake(admission, next(_addresses), [host]) is None


# --- symbol-narrowed tokens -----------------------------------------------------------------


async def test_a_symbol_narrowed_token_takes_that_symbol_only(
    admission: Stack, address: str
) -> None:
    admission.publish("market_data", "BTCUSDT", {"symbol": "BTCUSDT", "last_price": 1.0})
    admission.publish("market_data", "ETHUSDT", {"symbol": "ETHUSDT", "last_price": 2.0})
    key = admission.issue_token("btc-only", "--channels", "market_data:BTCUSDT")
    # by default it gets what its scope covers: that symbol's market data
    async with connect(admission.ws_url(token=key), additional_headers=headers(address)) as ws:
        snapshot = await receive(ws)
        assert set(snapshot["data"]) == {"market_data"}
        assert set(snapshot["data"]["market_data"]) <= {"BTCUSDT"}
        # a subscribe beyond the symbol closes 4403
        await ws.send('{"type":"subscribe","channels":["market_data"]}')
        assert await closed_within(ws, 5) == 4403
    for channels in ("market_data", "market_data:ETHUSDT", "market_data:BTCUSDT,account"):
        url = admission.ws_url(token=key, channels=channels)
        assert await close_code(url, next(_addresses)) == 4403
    url = admission.ws_url(token=key, channels="market_data:BTCUSDT")
    assert await close_code_or_none(url, next(_addresses)) is None


async def test_widening_a_sockets_channels_past_a_narrowed_scope_closes_it(
    admission: Stack, address: str
) -> None:
    key = admission.issue_token("btc-then-eth", "--channels", "market_data")
    name = f"{admission.prefix}-btc-then-eth"
    url = admission.ws_url(token=key, channels="market_data:ETHUSDT")
    async with connect(url, additional_headers=headers(address)) as ws:
        await receive(ws)
        # when an admin narrows the token to another symbol
        admission.manage(
            "shell",
            "-c",
            "from access.models import ApiToken; "
            f"ApiToken.objects.filter(name='{name}').update(channels=['market_data:BTCUSDT'])",
        )
        # then the socket taking ETHUSDT closes
        assert await closed_within(ws, 5) == 4403


# --- a token's owner ------------------------------------------------------------------------


async def test_deactivating_a_tokens_owner_closes_its_sockets_within_5_s(
    admission: Stack, address: str
) -> None:
    username = f"{admission.prefix}-owner"
    admission.manage(
        "shell",
        "-c",
        "from django.contrib.auth import get_user_model; "
        f"get_user_model().objects.create_user({username!r}, password='pw-123456789')",
    )
    key = admission.issue_token("owned", "--owner", username)
    async with connect(admission.ws_url(token=key), additional_headers=headers(address)) as ws:
        assert (await receive(ws))["type"] == "snapshot"
        # when an admin deactivates the user
        admission.manage(
            "shell",
            "-c",
            "from django.contrib.auth import get_user_model; "
            f"get_user_model().objects.filter(username={username!r}).update(is_active=False)",
        )
        # then the token's socket closes as unauthorized
        assert await closed_within(ws, 5) == 4401
    # and new handshakes with it are refused once the lookup cache (2 s) has expired
    deadline = asyncio.get_running_loop().time() + 5
    while await close_code_or_none(admission.ws_url(token=key), next(_addresses)) != 4401:
        assert asyncio.get_running_loop().time() < deadline, "the owner's token still works"
        await asyncio.sleep(0.1)  # polling interval
