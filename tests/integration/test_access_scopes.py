"""A token's channel scope (with symbol narrowing) and its owner, on every HTTP endpoint."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from io import StringIO
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone

from access.credentials import CACHE
from access.models import ApiToken
from access.services import token_issue
from aggregation.leader import LeaderLease
from aggregation.shared_snapshot import SharedSnapshot
from shared.core.records import Accepted, Channel, validate_record
from shared.core.state import TradingState
from shared.keys import RedisNames
from tests.history_rows import store, stream_row, tick_row
from tests.integration.test_access_http import bearer, issue

pytestmark = [
    pytest.mark.integration,
    pytest.mark.django_db,
    pytest.mark.usefixtures("fresh_access_state"),
]

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def recorded() -> None:
    """Ticks of two symbols, an order and an account row (through the recorder's write path)."""
    store(
        [
            tick_row("BTCUSDT", T0 + timedelta(seconds=1), 1.0),
            tick_row("ETHUSDT", T0 + timedelta(seconds=2), 2.0),
            stream_row("orders", {"id": "o1", "symbol": "BTCUSDT", "side": "BUY",
                                  "quantity": 1.0, "status": "NEW"}, T0),
            stream_row("account", {"total_balance": 1.0}, T0),
        ]
    )  # fmt: skip


def assert_forbidden(response: Any) -> None:
    assert response.status_code == 403, response.content
    body = response.json()
    assert set(body) == {"error", "message"}
    assert body["error"] == "permission_denied"


# --- /api/v1/history ------------------------------------------------------------------------


@pytest.mark.usefixtures("recorded")
@pytest.mark.parametrize("kind", ["account", "orders", "positions", "strategies"])
def test_a_market_data_token_reads_no_other_history(client: Client, kind: str) -> None:
    key = issue(channels=["market_data"])
    assert_forbidden(client.get("/api/v1/history", {"type": kind}, **bearer(key)))
    ticks = client.get("/api/v1/history", {"type": "market_data"}, **bearer(key))
    assert ticks.status_code == 200
    assert {row["symbol"] for row in ticks.json()["data"]} == {"BTCUSDT", "ETHUSDT"}


@pytest.mark.usefixtures("recorded")
def test_a_symbol_narrowed_token_reads_only_that_symbols_ticks_and_candles(client: Client) -> None:
    key = issue(channels=["market_data:BTCUSDT"])
    own = client.get("/api/v1/history", {"type": "market_data", "symbol": "BTCUSDT"}, **bearer(key))
    assert own.status_code == 200
    assert [row["symbol"] for row in own.json()["data"]] == ["BTCUSDT"]
    candles = {"type": "market_data", "symbol": "BTCUSDT", "interval": "1m"}
    assert client.get("/api/v1/history", candles, **bearer(key)).status_code == 200
    for params in (
        {"type": "market_data", "symbol": "ETHUSDT"},
        {"type": "market_data"},  # every symbol
        {"type": "market_data", "symbol": "ETHUSDT", "interval": "1m"},
        {"type": "orders", "symbol": "BTCUSDT"},  # the symbol, but not the channel
        {"type": "account"},
    ):
        assert_forbidden(client.get("/api/v1/history", params, **bearer(key)))


@pytest.mark.usefixtures("recorded")
def test_a_symbol_narrowed_orders_token_reads_that_symbols_orders(client: Client) -> None:
    key = issue(channels=["orders:BTCUSDT", "account"])
    own = client.get("/api/v1/history", {"type": "orders", "symbol": "BTCUSDT"}, **bearer(key))
    assert [row["id"] for row in own.json()["data"]] == ["o1"]
    assert client.get("/api/v1/history", {"type": "account"}, **bearer(key)).status_code == 200
    assert_forbidden(client.get("/api/v1/history", {"type": "orders"}, **bearer(key)))


@pytest.mark.usefixtures("recorded")
def test_a_bad_query_is_still_a_400_naming_the_parameter_for_a_scoped_token(
    client: Client,
) -> None:
    key = issue(channels=["market_data:BTCUSDT"])
    response = client.get("/api/v1/history", {"type": "candles"}, **bearer(key))
    assert response.status_code == 400
    assert response.json()["parameter"] == "type"


def test_a_session_reads_every_channels_history(
    client: Client, django_user_model: type[User]
) -> None:
    client.force_login(django_user_model.objects.create_user("quant", password="pw-123456789"))
    for kind in ("account", "orders", "market_data"):
        assert client.get("/api/v1/history", {"type": kind}).status_code == 200


# --- /api/v1/state and /debug ---------------------------------------------------------------


def md(symbol: str, price: float) -> Accepted:
    result = validate_record(Channel.MARKET_DATA, {"symbol": symbol, "last_price": price})
    assert isinstance(result, Accepted)
    return result


@pytest.fixture
def shared_state(deployment_prefix: str, redis_url: str) -> None:
    """A shared snapshot with two symbols' market data, as a leading worker writes it."""
    import redis.asyncio as aioredis

    async def write() -> None:
        client = aioredis.Redis.from_url(redis_url)
        try:
            names = RedisNames(deployment_prefix)
            lease = LeaderLease(client, key=names.leader, owner="w1", lease_ms=60_000)
            assert await lease.acquire()
            state = TradingState(cadences=("mirror",), max_orders=10)
            state.put(md("BTCUSDT", 1.0))
            state.put(md("ETHUSDT", 2.0))
            await SharedSnapshot(client, names).write_full(state, owner="w1")
        finally:
            await client.aclose()

    async_to_sync(write)()


@pytest.mark.usefixtures("shared_state")
def test_the_state_of_a_symbol_narrowed_token_holds_only_its_symbols(client: Client) -> None:
    key = issue(channels=["market_data:BTCUSDT"])
    body = client.get("/api/v1/state", **bearer(key)).json()
    assert set(body) == {"market_data", "seq", "epoch"}
    assert set(body["market_data"]) == {"BTCUSDT"}
    whole = client.get("/api/v1/state", **bearer(issue())).json()
    assert set(whole["market_data"]) == {"BTCUSDT", "ETHUSDT"}
    # with the seq and the epoch of the shared snapshot (contract 4.1), whatever the scope
    assert body["seq"] == whole["seq"] == 2
    assert body["epoch"] == whole["epoch"]
    assert isinstance(body["epoch"], str)
    assert body["epoch"]


@pytest.mark.usefixtures("shared_state")
def test_the_debug_dump_of_a_scoped_staff_token_holds_only_its_scope(client: Client) -> None:
    key = issue(channels=["market_data:ETHUSDT"], staff=True)
    body = client.get("/debug", **bearer(key)).json()
    assert set(body["data"]) == {"market_data"}
    assert set(body["data"]["market_data"]) == {"ETHUSDT"}
    assert body["counts"] == {"market_data": 1}
    whole = client.get("/debug", **bearer(issue(staff=True))).json()
    assert whole["counts"]["market_data"] == 2


# --- issuing narrowed tokens ----------------------------------------------------------------


def test_issue_token_takes_symbol_narrowed_channels() -> None:
    out = StringIO()
    call_command("issue_token", "btc", "--channels", "market_data:BTCUSDT", "account", stdout=out)
    assert ApiToken.objects.get(name="btc").channels == ["market_data:BTCUSDT", "account"]


@pytest.mark.parametrize(
    "channels",
    [
        ["candles"],
        ["market_data:"],  # no symbol
        ["market_data:BTC USDT"],  # not a key
        ["account:main"],  # account has no symbols
        ["market_data:" + "X" * 65],
    ],
)
def test_bad_channel_scopes_are_refused(channels: list[str]) -> None:
    with pytest.raises(ValidationError):
        token_issue(name="bad", channels=channels)
    with pytest.raises(CommandError):
        call_command("issue_token", "bad", "--channels", *channels, stdout=StringIO())


# --- a token's owner ------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/v1/state", "/api/v1/history?type=account", "/debug"])
def test_a_deactivated_owner_disables_the_token(
    client: Client, django_user_model: type[User], path: str
) -> None:
    owner = django_user_model.objects.create_user("alice", password="pw-123456789")
    key = token_issue(name="alices", owner=owner, staff=True)[1]
    unowned = token_issue(name="service", staff=True)[1]
    assert client.get(path, **bearer(key)).status_code == 200
    owner.is_active = False
    owner.save()
    CACHE.clear()  # what access_cache_s (2 s) does by itself
    response = client.get(path, **bearer(key))
    assert response.status_code == 401
    assert response.json()["error"] == "authentication_failed"
    assert client.get(path, **bearer(unowned)).status_code == 200  # a service token is no one's


def test_deleting_the_owner_deletes_the_token(django_user_model: type[User]) -> None:
    owner = django_user_model.objects.create_user("bob", password="pw-123456789")
    token_issue(name="bobs", owner=owner)
    owner.delete()
    assert not ApiToken.objects.filter(name="bobs").exists()


def test_issue_token_binds_an_owner(django_user_model: type[User]) -> None:
    owner = django_user_model.objects.create_user("carol", password="pw-123456789")
    call_command("issue_token", "carols", "--owner", "carol", stdout=StringIO())
    assert ApiToken.objects.get(name="carols").owner == owner
    with pytest.raises(CommandError, match="no user"):
        call_command("issue_token", "nobodys", "--owner", "nobody", stdout=StringIO())


def test_the_token_expiry_still_applies_to_an_owned_token(
    client: Client, django_user_model: type[User]
) -> None:
    owner = django_user_model.objects.create_user("dave", password="pw-123456789")
    token, key = token_issue(name="daves", owner=owner)
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert client.get("/api/v1/state", **bearer(key)).status_code == 401
