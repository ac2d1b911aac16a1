"""Staff broadcast a notice frame to every client of every web process over REST, logged with
who asked (issue 15, "Admins"); bad or unauthorised requests send nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import websockets

from tests.e2e.stack import Stack, connect, post_notice, receive

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def two_webs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A worker and two uvicorn web processes (no producer: the state does not move)."""
    from django.conf import settings

    stack = Stack(redis_url=str(settings.CONFIG.redis_url), log_dir=tmp_path_factory.mktemp("nt"))
    try:
        stack.start_worker()
        stack.start_web("web-1")
        stack.start_web("web-2")
        yield stack
    finally:
        stack.stop()


async def next_notice(ws: websockets.ClientConnection) -> dict[str, Any]:
    """The next notice frame (skipping state frames), within 5 s each."""
    while True:
        frame = await receive(ws)
        if frame["type"] == "notice":
            return frame


HOSTILE = "<img src=x onerror=alert(1)> & «quotes» 🚨"


async def test_a_notice_reaches_every_client_of_both_processes(two_webs: Stack) -> None:
    stack = two_webs
    staff = stack.issue_token("ops", "--staff")
    first, second = stack.web_ports
    async with (
        connect(stack.ws_url(first, type="web", format="json")) as json_1,
        connect(stack.ws_url(second, type="tui", format="msgpack")) as msgpack_2,
        connect(stack.ws_url(second, type="web", format="json")) as json_2,
    ):
        for ws in (json_1, msgpack_2, json_2):
            assert (await receive(ws))["type"] == "snapshot"
        body = json.dumps({"level": "warning", "text": HOSTILE}).encode()
        assert post_notice(stack.web_ports[0], body, staff) == (202, {"sent": True})
        expected = {"type": "notice", "level": "warning", "text": HOSTILE}
        for ws in (json_1, msgpack_2, json_2):
            assert await next_notice(ws) == expected
        # the frame's encoding is the client's: text for JSON, binary for MessagePack
        assert post_notice(stack.web_ports[0], b'{"level": "info", "text": "ok"}', staff)[0] == 202
        assert isinstance(await json_1.recv(), str)
        assert isinstance(await msgpack_2.recv(), bytes)

    notices = [
        json.loads(line)
        for line in next(p for p in stack.processes if p.log_path.name == "web-1.log")
        .output()
        .splitlines()
        if line.startswith("{") and '"admin.notice"' in line
    ]
    by = f"token:{stack.prefix}-ops"
    assert [(n["by"], n["notice_level"], n["text_length"]) for n in notices] == [
        (by, "warning", len(HOSTILE)),
        (by, "info", 2),
    ]
    assert all(HOSTILE not in json.dumps(n) for n in notices)  # the length, not the text


BAD_BODIES = [
    (b"not json", "application/json"),
    (b'{"level": "info", "text": "x"', "application/json"),
    (b"[]", "application/json"),
    (b'"info"', "application/json"),
    (b'{"level": "info"}', "application/json"),
    (b'{"level": "info", "text": 42}', "application/json"),
    (b'{"level": "info", "text": null}', "application/json"),
    (b'{"level": 1, "text": "x"}', "application/json"),
    (b'{"level": "critical", "text": "x"}', "application/json"),
    (b'{"level": "info", "text": ""}', "application/json"),
    (json.dumps({"level": "info", "text": "x" * 501}).encode(), "application/json"),
    (b'{"level": "info", "text": "a\\u0000b"}', "application/json"),
    (b'{"level": "info", "text": "\\u001b[2J cleared"}', "application/json"),
    (b'{"level": "info", "text": "two\\nlines"}', "application/json"),
    (b'{"level": "info", "text": "rtl \\u202e"}', "application/json"),
    (b'{"level": "info", "text": "lone \\ud800"}', "application/json"),
    (b"\xff\xfe", "application/json"),
]


async def test_bad_bodies_get_400_and_non_staff_403_and_nothing_is_sent(two_webs: Stack) -> None:
    stack = two_webs
    staff = stack.issue_token("ops2", "--staff")
    quant = stack.issue_token("quant")
    async with connect(stack.ws_url(stack.web_ports[1], format="json")) as ws:
        assert (await receive(ws))["type"] == "snapshot"
        for body, content_type in BAD_BODIES:
            status, answer = post_notice(stack.web_ports[0], body, staff, content_type)
            assert status == 400, (body, status, answer)
            assert set(answer) == {"error", "message"}, (body, answer)
        status, answer = post_notice(
            stack.web_ports[0], b'{"level": "info", "text": "x"}', staff, "text/plain"
        )
        assert (status, answer["error"]) == (415, "unsupported_media_type")
        status, answer = post_notice(
            stack.web_ports[0], b'{"level": "info", "text": "from a quant"}', quant
        )
        assert (status, answer["error"]) == (403, "permission_denied")
        # the first notice the client gets is the next good one: none of the above was sent
        assert (
            post_notice(stack.web_ports[0], b'{"level": "info", "text": "good"}', staff)[0] == 202
        )
        assert await next_notice(ws) == {"type": "notice", "level": "info", "text": "good"}
