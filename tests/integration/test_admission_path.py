"""The handshake's hot path: what a connection costs once its credential is known.

Through the real ASGI application (channels' communicator, the product's middleware stack and
consumer, a hub on real Redis, tokens and sessions in PostgreSQL): every `sync_to_async` call is
a thread-pool hop — a submit, a future, a wake-up of the event loop — which capped admission
near 550 connections a second (docs/BENCHMARKS.md, "Admission").
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from asgiref.sync import SyncToAsync
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from access.services import token_issue

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

URL = "/ws?type=web&format=json"


@pytest.fixture
async def hub_stopped_after(deployment_prefix: str) -> AsyncIterator[None]:
    """Stop the hub this test's connections started (one per event loop), and close the
    database connection of the thread the lookups ran in (the test database is dropped)."""
    yield
    from django.db import connections

    from realtime import hub as hub_module

    await database_sync_to_async(connections.close_all)()

    hub = hub_module._hubs.pop(asyncio.get_running_loop(), None)
    if hub is not None:
        await hub.stop()


def count_hops(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """From now on, the name of every function run through `sync_to_async` (database ones too)."""
    hops: list[str] = []
    original = SyncToAsync.__call__

    async def counted(self: SyncToAsync[Any, Any], *args: Any, **kwargs: Any) -> Any:
        hops.append(getattr(self.func, "__qualname__", repr(self.func)))
        return await original(self, *args, **kwargs)

    monkeypatch.setattr(SyncToAsync, "__call__", counted)
    return hops


async def one_connection(headers: list[tuple[bytes, bytes]], path: str = URL) -> None:
    """Connect, take the snapshot and the status that follows it, ping, and leave."""
    from dashboard_project.asgi import application

    communicator = WebsocketCommunicator(
        application, path, headers=[(b"host", b"localhost"), *headers]
    )
    connected, code = await communicator.connect(timeout=10)
    assert connected, code
    snapshot = await communicator.receive_json_from(timeout=10)
    assert snapshot["type"] == "snapshot"
    assert (await communicator.receive_json_from(timeout=10))["type"] == "status"  # contract 4.1
    await communicator.send_json_to({"type": "ping"})
    assert (await communicator.receive_json_from(timeout=10))["type"] == "pong"
    await communicator.disconnect()


@pytest.mark.usefixtures("fresh_access_state", "hub_stopped_after")
async def test_a_token_connection_takes_no_thread_pool_hop_once_its_token_is_cached(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, key = await database_sync_to_async(token_issue)(name="hops")
    await one_connection([(b"authorization", f"Bearer {key}".encode())])  # the token cached
    hops = count_hops(monkeypatch)
    await one_connection([(b"authorization", f"Bearer {key}".encode())])
    await one_connection([], path=f"{URL}&token={key}")
    assert hops == []


@pytest.mark.usefixtures("fresh_access_state")
async def test_a_storm_of_handshakes_with_one_uncached_credential_takes_one_lookup(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given a token and a login session this process has not seen (a fresh web process that
    # the clients of a stopped one all reconnect to)
    from access.credentials import asession_credential, atoken_credential

    _, key = await database_sync_to_async(token_issue)(name="storm")
    session = await database_sync_to_async(login_session)("storm-session")
    hops = count_hops(monkeypatch)
    # when 50 handshakes look each up at once
    tokens = await asyncio.gather(*(atoken_credential(key) for _ in range(50)))
    sessions = await asyncio.gather(*(asession_credential(session) for _ in range(50)))
    # then every one is answered by a single lookup in the database thread
    assert {credential.name for credential in tokens if credential} == {"storm"}
    assert len([c for c in sessions if c is not None and c.kind == "session"]) == 50
    assert sorted(hops) == ["session_credential", "token_credential"]
    from django.db import connections

    await database_sync_to_async(connections.close_all)()


def login_session(username: str) -> str:
    """A login session of a new user, as Django's login view leaves it; its key."""
    from django.contrib.auth import get_user_model
    from django.test import Client

    client = Client()
    client.force_login(get_user_model().objects.create_user(username, "", "pw"))
    return str(client.session.session_key)


@pytest.mark.usefixtures("fresh_access_state", "hub_stopped_after")
async def test_a_session_connection_takes_no_thread_pool_hop_once_its_session_is_cached(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key = await database_sync_to_async(login_session)("hops-session")
    cookie = (b"cookie", f"sessionid={key}".encode())
    await one_connection([cookie])  # the session looked up, and cached
    hops = count_hops(monkeypatch)
    await one_connection([cookie])
    assert hops == []


@pytest.mark.usefixtures("fresh_access_state", "hub_stopped_after")
async def test_a_connection_without_a_cookie_needs_no_session_machinery() -> None:
    from dashboard_project.asgi import application

    # a token connection passes, and a bogus cookie is refused as unauthenticated
    _, key = await database_sync_to_async(token_issue)(name="no-cookie")
    await one_connection([(b"authorization", f"Bearer {key}".encode())])
    communicator = WebsocketCommunicator(
        application, URL, headers=[(b"host", b"localhost"), (b"cookie", b"sessionid=bogus")]
    )
    connected, _ = await communicator.connect(timeout=10)
    assert connected  # accepted only to be closed with the contract's code
    closed = await communicator.receive_output(timeout=10)
    assert closed == {"type": "websocket.close", "code": 4401, "reason": closed.get("reason")}


@pytest.mark.usefixtures("fresh_access_state", "hub_stopped_after")
async def test_the_hub_writes_to_the_servers_own_send_past_any_middleware() -> None:
    from dashboard_project.asgi import application
    from realtime.consumers import DashboardConsumer
    from realtime.hub import current_hub

    _, key = await database_sync_to_async(token_issue)(name="own-send")
    communicator = WebsocketCommunicator(
        application,
        URL,
        headers=[(b"host", b"localhost"), (b"authorization", f"Bearer {key}".encode())],
    )
    assert (await communicator.connect(timeout=10))[0]
    await communicator.receive_json_from(timeout=10)
    hub = current_hub()
    assert hub is not None
    (member,) = hub._members["web"]
    assert isinstance(member, DashboardConsumer)
    # the communicator plays the server: what it passed as `send` is what the writer steps
    assert member.writer._send == communicator.output_queue.put
    await communicator.disconnect()
    # and the consumer holds the server's own scope (no copy per connection), whose handshake
    # headers it let go of once the gate had read them
    assert member.scope is communicator.scope
    assert member.scope["headers"] == ()
    assert member.scope["session_key"] is None


@pytest.mark.parametrize("path", ["/wsx", "/ws/", "/api/v1/state", "/", "/desk/ws"])
async def test_a_websocket_handshake_for_a_path_other_than_ws_is_refused(path: str) -> None:
    from dashboard_project.asgi import application

    communicator = WebsocketCommunicator(application, path, headers=[(b"host", b"localhost")])
    # refused before the accept (uvicorn answers HTTP 403), not an exception in the application
    assert await communicator.connect(timeout=10) == (False, 1008)


@pytest.mark.usefixtures("fresh_access_state", "hub_stopped_after")
async def test_the_ws_route_is_found_below_the_deployments_root_path() -> None:
    from dashboard_project.asgi import application

    _, key = await database_sync_to_async(token_issue)(name="root-path")
    communicator = WebsocketCommunicator(
        application,
        f"/desk{URL}",
        headers=[(b"host", b"localhost"), (b"authorization", f"Bearer {key}".encode())],
    )
    communicator.scope["root_path"] = "/desk"
    assert (await communicator.connect(timeout=10))[0]
    assert (await communicator.receive_json_from(timeout=10))["type"] == "snapshot"
    await communicator.disconnect()
