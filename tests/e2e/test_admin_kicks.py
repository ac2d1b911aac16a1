"""Staff see who each client is and kick by client, by token or by user over REST, logged with
who asked (issue 15, "Admins")."""

from __future__ import annotations

import asyncio
import http.client
import json
from typing import Any

import pytest
import websockets

from support.processes import wait_until
from tests.e2e.stack import Stack, connect, receive

pytestmark = [pytest.mark.e2e]


def call(stack: Stack, method: str, path: str, token: str) -> tuple[int, Any]:
    connection = http.client.HTTPConnection("127.0.0.1", stack.web_ports[0], timeout=5)
    try:
        connection.request(method, path, headers={"Authorization": f"Bearer {token}"})
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        connection.close()


async def closed_with(ws: websockets.ClientConnection) -> int | None:
    """The close code, once the server has closed `ws` (within 10 s)."""
    await asyncio.wait_for(ws.wait_closed(), 10)
    return ws.close_code


async def test_staff_kick_a_tokens_clients_and_one_client(stack: Stack) -> None:
    staff = stack.issue_token("ops", "--staff")
    quant, other = stack.issue_token("quant"), stack.issue_token("other")
    port = stack.web_ports[0]
    url = f"ws://127.0.0.1:{port}/ws?type=web&format=json&token="
    async with (
        connect(url + quant) as q1,
        connect(url + quant) as q2,
        connect(url + other) as o1,
    ):
        for ws in (q1, q2, o1):
            assert (await receive(ws))["type"] == "snapshot"

        def listed() -> list[dict[str, Any]]:
            status, body = call(stack, "GET", "/api/v1/clients", staff)
            assert status == 200, body
            return body["clients"] if len(body["clients"]) == 3 else []

        clients = await asyncio.to_thread(
            wait_until, listed, timeout=15, what="three clients listed"
        )
        tokens = sorted(c["token"] for c in clients)
        assert tokens == sorted([f"{stack.prefix}-quant"] * 2 + [f"{stack.prefix}-other"])
        assert all(c["user"] == "" for c in clients)

        # A non-staff token may not kick.
        assert call(stack, "POST", f"/api/v1/tokens/{stack.prefix}-other/kick", quant)[0] == 403
        # No such user: 404, nothing closed.
        assert call(stack, "POST", "/api/v1/users/nobody/kick", staff)[0] == 404

        status, body = call(stack, "POST", f"/api/v1/tokens/{stack.prefix}-quant/kick", staff)
        assert status == 202
        assert len(body["kicked"]) == 2
        assert await closed_with(q1) == 4000
        assert await closed_with(q2) == 4000

        (mine,) = (c["id"] for c in clients if c["token"] == f"{stack.prefix}-other")
        assert call(stack, "POST", f"/api/v1/clients/{mine}/kick", staff) == (
            202,
            {"kicked": [mine]},
        )
        assert await closed_with(o1) == 4000

    web = next(p for p in stack.processes if p.args == ["serve"])
    kicks = [
        json.loads(line)
        for line in web.output().splitlines()
        if line.startswith("{") and '"admin.kick"' in line
    ]
    assert [(k["by"], k["target"], len(k["clients"])) for k in kicks] == [
        (f"token:{stack.prefix}-ops", "user", 0),
        (f"token:{stack.prefix}-ops", "token", 2),
        (f"token:{stack.prefix}-ops", "client", 1),
    ]
