"""realtime.notices.deliver: what a hub does with a `client.notice` from the control group."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

import msgpack
import orjson
import pytest

from realtime import notices
from realtime.protocol import Format


@dataclass(eq=False)
class Member:
    """A hub member that records the notice payloads it was handed, in its own format."""

    fmt: Format
    cadence: str = "web"
    client_id: str = "c"
    stalled: bool = False
    broken: bool = False
    got: list[str | bytes] = field(default_factory=list)

    def notify(self, frames: Mapping[Format, str | bytes]) -> bool:
        if self.broken:
            raise ConnectionResetError("gone")
        if self.stalled:
            return False
        self.got.append(frames[self.fmt])
        return True


def test_each_member_gets_one_frame_in_its_format() -> None:
    web, tui = Member(Format.JSON), Member(Format.MSGPACK, cadence="tui")
    stalled, broken = Member(Format.JSON, stalled=True), Member(Format.JSON, broken=True)
    event = {"type": notices.EVENT, "level": "warning", "text": "<b>halt</b>"}
    written = notices.deliver([broken, web, stalled, tui], event)
    assert written == 2
    expected = {"type": "notice", "level": "warning", "text": "<b>halt</b>"}
    assert [orjson.loads(p) for p in web.got] == [expected]
    assert isinstance(tui.got[0], bytes)
    assert msgpack.unpackb(tui.got[0]) == expected
    assert stalled.got == []
    assert broken.got == []


@pytest.mark.parametrize(
    "event",
    [
        {"type": notices.EVENT},
        {"type": notices.EVENT, "level": "alert", "text": "x"},
        {"type": notices.EVENT, "level": "info", "text": b"bytes"},
        {"type": notices.EVENT, "level": "info", "text": "\x1b]8;;http://x\x07link"},
        {"type": notices.EVENT, "level": "info", "text": "x" * 10_000},
    ],
)
def test_a_foreign_notice_is_dropped_with_a_warning(
    event: dict[str, object], caplog: pytest.LogCaptureFixture
) -> None:
    member = Member(Format.JSON)
    with caplog.at_level(logging.WARNING, logger="realtime.notices"):
        assert notices.deliver([member], event) == 0
    assert member.got == []
    assert [r.getMessage() for r in caplog.records] == ["hub dropped a malformed notice"]
