"""The earlier service's runbook against a real web process (docs/MIGRATING.md): health with
HEAD/OPTIONS and CORS, its start-up event with the version, a connect and a close event per
client."""

from __future__ import annotations

import http.client
import json
from typing import Any

import pytest

from dashboard_project import __version__
from support.processes import ManagedProcess, wait_until
from tests.e2e.stack import Stack, connect, receive

pytestmark = [pytest.mark.e2e]


def web_process(stack: Stack) -> ManagedProcess:
    return next(p for p in stack.processes if p.args == ["serve"])


def events(process: ManagedProcess, event: str) -> list[dict[str, Any]]:
    """The JSON log lines of `process` whose `event` is `event`."""
    found = []
    for line in process.output().splitlines():
        if line.startswith("{") and f'"{event}"' in line:
            record = json.loads(line)
            if record.get("event") == event:
                found.append(record)
    return found


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS"])
def test_health_answers_every_method_the_runbook_uses(stack: Stack, method: str) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", stack.web_ports[0], timeout=5)
    connection.request(method, "/health")
    response = connection.getresponse()
    body = response.read()
    connection.close()
    assert response.status == 200
    assert response.getheader("Access-Control-Allow-Origin") == "*"
    if method == "HEAD":
        assert body == b""
    else:
        assert json.loads(body) == {"status": "ok", "service": "dashboard-server"}


def test_start_up_event_carries_the_version(stack: Stack) -> None:
    (start,) = events(web_process(stack), "web.start")
    assert start["level"] == "info"
    assert start["version"] == __version__
    assert start["address"] == f"127.0.0.1:{stack.web_ports[0]}"


async def test_connect_and_close_events_per_client(stack: Stack) -> None:
    web = web_process(stack)
    async with connect(stack.ws_url(type="tui", format="msgpack")) as ws:
        snapshot = await receive(ws)
        assert snapshot["type"] == "snapshot"
        (opened,) = wait_until(
            lambda: events(web, "ws.connect"), timeout=10, what="the connect event"
        )
        await ws.close(code=1000)
    (closed,) = wait_until(lambda: events(web, "ws.close"), timeout=10, what="the close event")
    for record in (opened, closed):
        assert record["level"] == "info"
        assert record["client_type"] == "tui"
        assert record["format"] == "msgpack"
        assert record["remote_addr"] == "127.0.0.1"
    assert closed["client_id"] == opened["client_id"]
    assert closed["code"] == 1000
    assert 0 <= closed["duration_s"] < 30
    assert "token" not in json.dumps([opened, closed])
    # and the server's own line per handshake is not logged besides: `ws.connect` says it
    assert "[accepted]" not in web.output()
