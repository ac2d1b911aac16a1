"""The admin page of connected clients (presence registry) and its kick action."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from channels.layers import get_channel_layer
from django.contrib.auth.models import User
from django.test import Client

from realtime.group_subscription import CONTROL
from realtime.presence import ClientInfo, publish_presence
from shared.keys import RedisNames

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

URL = "/admin/realtime/connectedclient/"


@pytest.fixture
def prefix(deployment_prefix: str) -> str:
    """This test's deployment prefix (tests/integration/conftest.py)."""
    return deployment_prefix


def present(redis_url: str, prefix: str, *, token: str = "") -> None:
    """One web process's presence list with one client, as its hub would publish it."""
    import redis.asyncio as aioredis

    async def publish() -> None:
        client = aioredis.Redis.from_url(redis_url)
        info = ClientInfo(
            id="web-1-abcd",
            type="tui",
            format="msgpack",
            subscriptions=["market_data:BTCUSDT"],
            remote_addr="203.0.113.5",
            connected_at="2026-11-24T00:00:00.000Z",
            process="web-1",
            messages_sent=42,
            token=token,
        )
        await publish_presence(client, prefix=prefix, process="web-1", clients=[info])
        await client.aclose()

    asyncio.run(publish())


def test_staff_see_every_connected_client(
    client: Client, django_user_model: type[User], prefix: str, redis_url: str
) -> None:
    present(redis_url, prefix)
    client.force_login(django_user_model.objects.create_user("ops", "", "pw", is_staff=True))
    index = client.get("/admin/").content.decode()
    assert URL in index
    page = client.get(URL).content.decode()
    for text in ("web-1-abcd", "tui", "msgpack", "market_data:BTCUSDT", "203.0.113.5", "42"):
        assert text in page


def test_the_client_list_carries_exactly_the_documented_fields(
    client: Client, django_user_model: type[User], prefix: str, redis_url: str
) -> None:
    # docs/OBSERVABILITY.md, `GET /api/v1/clients`: no field that nothing fills (`extra` was one)
    present(redis_url, prefix, token="quant-notebook")
    client.force_login(django_user_model.objects.create_user("ops", "", "pw", is_staff=True))
    (entry,) = client.get("/api/v1/clients").json()["clients"]
    assert entry == {
        "id": "web-1-abcd",
        "type": "tui",
        "format": "msgpack",
        "subscriptions": ["market_data:BTCUSDT"],
        "remote_addr": "203.0.113.5",
        "connected_at": "2026-11-24T00:00:00.000Z",
        "process": "web-1",
        "messages_sent": 42,
        "user": "",
        "token": "quant-notebook",
    }


def test_non_staff_do_not(client: Client, django_user_model: type[User], prefix: str) -> None:
    client.force_login(django_user_model.objects.create_user("quant", "", "pw"))
    assert client.get(URL).status_code == 302  # to the admin login


def test_kick_asks_the_web_processes_to_close_the_client(
    client: Client, django_user_model: type[User], prefix: str
) -> None:
    # given a listener on the control group, as every hub is
    layer = get_channel_layer()
    group = RedisNames(prefix).group(CONTROL)

    async def listen() -> str:
        channel = await layer.new_channel()
        await layer.group_add(group, channel)
        return channel

    async def receive(channel: str) -> dict[str, Any]:
        return dict(await asyncio.wait_for(layer.receive(channel), 5))

    loop = asyncio.new_event_loop()
    try:
        channel = loop.run_until_complete(listen())
        client.force_login(django_user_model.objects.create_user("ops", "", "pw", is_staff=True))
        # when staff press Kick
        response = client.post(f"{URL}kick/", {"client_id": "web-1-abcd"})
        assert response.status_code == 302
        # then the hubs hear it
        message = loop.run_until_complete(receive(channel))
        assert message == {"type": "client.kick", "client_id": "web-1-abcd"}
        assert client.post(f"{URL}kick/", {"client_id": ""}).status_code == 302  # no crash
        assert client.get(f"{URL}kick/").status_code == 405
    finally:
        loop.run_until_complete(layer.group_discard(group, channel))
        loop.close()


class ControlGroup:
    """A listener on the control group, as every hub is."""

    def __init__(self, prefix: str) -> None:
        self.layer = get_channel_layer()
        self.group = RedisNames(prefix).group(CONTROL)
        self.loop = asyncio.new_event_loop()
        self.channel = self.loop.run_until_complete(self.layer.new_channel())
        self.loop.run_until_complete(self.layer.group_add(self.group, self.channel))

    def receive(self) -> dict[str, Any]:
        """The next message the hubs hear (within 5 s)."""
        return dict(
            self.loop.run_until_complete(asyncio.wait_for(self.layer.receive(self.channel), 5))
        )

    def close(self) -> None:
        """Leave the group."""
        self.loop.run_until_complete(self.layer.group_discard(self.group, self.channel))
        self.loop.close()


@pytest.fixture
def control(prefix: str) -> Iterator[ControlGroup]:
    """A listener on this test's control group, left after the test."""
    listener = ControlGroup(prefix)
    yield listener
    listener.close()


def said(response: Any) -> list[str]:
    """The admin messages shown on the page a redirect led to."""
    return [str(message) for message in response.context["messages"]]


def test_staff_see_whose_client_it_is_and_kick_by_token(
    client: Client,
    django_user_model: type[User],
    prefix: str,
    control: ControlGroup,
    redis_url: str,
) -> None:
    present(redis_url, prefix, token="quant-notebook")
    client.force_login(django_user_model.objects.create_user("ops", "", "pw", is_staff=True))
    page = client.get(URL).content.decode()
    assert "token quant-notebook" in page
    assert 'name="token" value="quant-notebook"' in page
    response = client.post(f"{URL}kick/", {"token": "quant-notebook"}, follow=True)
    assert said(response) == ["asked the web processes to close web-1-abcd"]
    message = control.receive()
    assert message == {"type": "client.kick", "client_id": "web-1-abcd"}
    nobody = client.post(f"{URL}kick/", {"user": "nobody"}, follow=True)
    assert said(nobody) == ["no connected client of user nobody"]
    both = client.post(f"{URL}kick/", {"user": "a", "token": "b"}, follow=True)
    assert said(both) == ["give one client, token or user"]


def test_staff_send_a_notice_from_the_page_and_bad_ones_send_nothing(
    client: Client, django_user_model: type[User], prefix: str, control: ControlGroup
) -> None:
    client.force_login(django_user_model.objects.create_user("ops", "", "pw", is_staff=True))
    page = client.get(URL).content.decode()
    assert f'action="{URL}notice/"' in page
    for bad, why in (
        ({"level": "panic", "text": "x"}, "level must be one of info, warning"),
        ({"level": "info", "text": ""}, "text must be 1 to 500 characters"),
        ({"level": "info", "text": "x" * 501}, "text must be 1 to 500 characters"),
        ({"level": "info", "text": "a\x1b[2Jb"}, "text must not contain control characters"),
    ):
        response = client.post(f"{URL}notice/", bad, follow=True)
        assert said(response) == [f"notice not sent: {why}"]
    text = "Desk closes at 17:00 <b>sharp</b>"
    response = client.post(f"{URL}notice/", {"level": "warning", "text": text}, follow=True)
    assert said(response) == ["notice sent to every connected client"]
    # the first message the hubs hear is the good one: the bad ones sent nothing
    message = control.receive()
    assert message == {"type": "client.notice", "level": "warning", "text": text}
    assert client.get(f"{URL}notice/").status_code == 405


def test_a_staff_session_sends_a_notice_over_rest_only_with_the_csrf_token(
    django_user_model: type[User], control: ControlGroup
) -> None:
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(django_user_model.objects.create_user("ops", "", "pw", is_staff=True))
    body = {"level": "info", "text": "lunch is served"}
    # without the CSRF token: refused, nothing sent
    refused = browser.post("/api/v1/notice", body, content_type="application/json")
    assert refused.status_code == 403
    assert refused.json()["error"] == "permission_denied"
    # with it (the cookie a page set, echoed in the header): sent
    browser.get(URL)
    csrf = browser.cookies["csrftoken"].value
    sent = browser.post(
        "/api/v1/notice", body, content_type="application/json", headers={"X-CSRFToken": csrf}
    )
    assert (sent.status_code, sent.json()) == (202, {"sent": True})
    assert control.receive() == {"type": "client.notice", **body}


def test_a_non_staff_session_may_not_send_a_notice(
    client: Client, django_user_model: type[User], control: ControlGroup
) -> None:
    client.force_login(django_user_model.objects.create_user("quant", "", "pw"))
    response = client.post(
        "/api/v1/notice", {"level": "info", "text": "x"}, content_type="application/json"
    )
    assert response.status_code == 403
    # the first message the hubs hear is a staff member's next one: the refused one sent nothing
    client.force_login(django_user_model.objects.create_user("ops", "", "pw", is_staff=True))
    body = {"level": "info", "text": "y"}
    assert client.post("/api/v1/notice", body, content_type="application/json").status_code == 202
    assert control.receive() == {"type": "client.notice", **body}
