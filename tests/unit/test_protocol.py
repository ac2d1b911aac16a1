"""realtime.protocol: client messages, subscriptions, filtering, continuity, encoding."""

from __future__ import annotations

import copy

import msgpack
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from realtime import protocol
from realtime.protocol import (
    EVERYTHING,
    ClientMessage,
    Continuity,
    ErrorCode,
    Format,
    ProtocolError,
)
from shared.core.changes import apply_changes
from shared.core.records import Accepted
from shared.core.state import TradingState
from tests.unit.core_records_strategies import SYMBOLS, accepted_records

MAX = 4096


def parse(data: str | bytes) -> ClientMessage:
    return protocol.parse_client_message(data, max_bytes=MAX)


def error_of(data: str | bytes) -> ErrorCode:
    with pytest.raises(ProtocolError) as caught:
        parse(data)
    return caught.value.code


def test_valid_messages() -> None:
    assert parse('{"type":"ping"}') == ClientMessage("ping")
    assert parse(b'{"type":"refresh"}') == ClientMessage("refresh")
    assert parse('{"type":"subscribe","channels":["orders","market_data:BTCUSDT"]}') == (
        ClientMessage("subscribe", {"orders": None, "market_data": frozenset({"BTCUSDT"})})
    )


@pytest.mark.parametrize(
    ("data", "code"),
    [
        ("", ErrorCode.BAD_JSON),
        ("{", ErrorCode.BAD_JSON),
        ("NaN", ErrorCode.BAD_JSON),
        (b"\xff\xfe", ErrorCode.BAD_JSON),
        ("[" * 3000, ErrorCode.BAD_JSON),
        ("null", ErrorCode.BAD_MESSAGE),
        ("[]", ErrorCode.BAD_MESSAGE),
        ('{"type":null}', ErrorCode.BAD_MESSAGE),
        ('{"type":{"a":1}}', ErrorCode.BAD_MESSAGE),
        ('{"type":"subscribe","channels":null}', ErrorCode.BAD_MESSAGE),
        ('{"type":"subscribe","channels":[null]}', ErrorCode.BAD_MESSAGE),
        ('{"type":"subscribe","channels":["x"]}', ErrorCode.UNKNOWN_CHANNEL),
        ('{"type":"subscribe","channels":["market_data:"]}', ErrorCode.UNKNOWN_CHANNEL),
        ('{"type":"subscribe","channels":["market_data:a:b"]}', ErrorCode.UNKNOWN_CHANNEL),
        ('{"type":"subscribe","channels":["account:x"]}', ErrorCode.UNKNOWN_CHANNEL),
        ('{"type":"subscribe","channels":["market_data:BTCUSDT\\n"]}', ErrorCode.UNKNOWN_CHANNEL),
        ("x" * 5000, ErrorCode.TOO_LARGE),
    ],
)
def test_bad_messages(data: str | bytes, code: ErrorCode) -> None:
    assert error_of(data) is code


def test_too_many_channel_items_are_refused() -> None:
    channels = orjson.dumps({"type": "subscribe", "channels": ["orders"] * 300})
    with pytest.raises(ProtocolError) as caught:
        protocol.parse_client_message(channels, max_bytes=10**6)
    assert caught.value.code is ErrorCode.BAD_MESSAGE


def test_query_channels() -> None:
    assert protocol.parse_query_channels(None) == EVERYTHING
    assert protocol.parse_query_channels("orders,positions:ETHUSDT") == {
        "orders": None,
        "positions": frozenset({"ETHUSDT"}),
    }
    with pytest.raises(ProtocolError):
        protocol.parse_query_channels("orders,nope")
    with pytest.raises(ProtocolError):  # a look-alike symbol, not BTCUSDT
        protocol.parse_query_channels("market_data:BTCUSDT\n")


def test_subscribe_and_unsubscribe() -> None:
    narrow = {"market_data": frozenset({"BTCUSDT"})}
    both = protocol.subscribe(narrow, {"market_data": frozenset({"ETHUSDT"}), "orders": None})
    assert both == {"market_data": frozenset({"BTCUSDT", "ETHUSDT"}), "orders": None}
    assert protocol.subscribe(both, {"market_data": None})["market_data"] is None
    assert protocol.unsubscribe(both, {"market_data": frozenset({"BTCUSDT"})}) == {
        "market_data": frozenset({"ETHUSDT"}),
        "orders": None,
    }
    assert protocol.unsubscribe(both, {"orders": None, "market_data": None}) == {}
    # removing one symbol from a whole channel is not expressible: nothing changes
    assert protocol.unsubscribe(EVERYTHING, {"market_data": frozenset({"X"})}) == EVERYTHING
    assert protocol.is_everything(EVERYTHING)
    assert not protocol.is_everything(both)


def test_continuity() -> None:
    continuity = Continuity(10)
    assert continuity.check(base_seq=8, seq=10) == "skip"
    assert continuity.check(base_seq=5, seq=12) == "forward"
    assert continuity.check(base_seq=10, seq=12) == "forward"
    assert continuity.check(base_seq=11, seq=12) == "resync"


def test_continuity_across_lineages() -> None:
    # given a client at seq 10 of epoch "a"
    continuity = Continuity(10, "a")
    # then an update of epoch "a" is judged by its seqs, one of another epoch is always a gap
    assert continuity.check(base_seq=10, seq=12, epoch="a") == "forward"
    assert continuity.check(base_seq=8, seq=10, epoch="a") == "skip"
    assert continuity.check(base_seq=10, seq=12, epoch="b") == "resync"
    assert continuity.check(base_seq=8, seq=10, epoch="b") == "resync"


def test_parse_resume() -> None:
    # neither: no resume
    assert protocol.parse_resume(None, None) is None
    assert protocol.parse_resume("0", "e1") == protocol.ResumeRequest(0, "e1")
    assert protocol.parse_resume("1767225600000000", "a1b2-c_3") == protocol.ResumeRequest(
        1767225600000000, "a1b2-c_3"
    )
    assert protocol.parse_resume(str(protocol.MAX_SEQ), "e") == protocol.ResumeRequest(
        protocol.MAX_SEQ, "e"
    )


@pytest.mark.parametrize(
    ("since", "epoch"),
    [
        ("12", None),  # since without epoch
        (None, "e1"),  # epoch without since
        ("", "e1"),
        ("-1", "e1"),
        ("+1", "e1"),
        ("1.0", "e1"),
        ("1e3", "e1"),
        (" 12", "e1"),
        ("12 ", "e1"),
        ("0x10", "e1"),
        ("abc", "e1"),
        ("\u0661", "e1"),  # an Arabic-Indic digit: a digit to str.isdigit, not a seq
        (str(2**53), "e1"),  # past what JavaScript holds exactly
        ("9" * 17, "e1"),
        ("9" * 5000, "e1"),  # oversized
        ("12", ""),
        ("12", "e" * 65),  # oversized epoch
        ("12", "e 1"),
        ("12", "e1\n"),
        ("12", "é"),
        ("12", "../x"),
    ],
)
def test_parse_resume_refuses_malformed(since: str | None, epoch: str | None) -> None:
    with pytest.raises(ProtocolError) as caught:
        protocol.parse_resume(since, epoch)
    assert caught.value.code is ErrorCode.BAD_MESSAGE
    assert len(caught.value.message) < 200  # never the input echoed back


def test_frames_carry_seq_base_seq_and_epoch() -> None:
    at = "2026-11-23T12:00:00.000Z"
    assert protocol.update_frame(12, 10, "e1", at, {"account": {}}) == {
        "type": "update",
        "seq": 12,
        "base_seq": 10,
        "epoch": "e1",
        "timestamp": at,
        "changes": {"account": {}},
    }
    assert protocol.snapshot_frame(12, "e1", at, {}) == {
        "type": "snapshot",
        "seq": 12,
        "epoch": "e1",
        "timestamp": at,
        "data": {},
    }
    refused = protocol.snapshot_frame(12, "e1", at, {}, refused="too_old")
    assert refused["recovered"] is False
    assert refused["reason"] == "too_old"
    assert protocol.recovered_frame(5, 12, "e1") == {
        "type": "recovered",
        "since": 5,
        "seq": 12,
        "epoch": "e1",
    }


def test_encode_json_text_and_msgpack_bytes() -> None:
    frame = protocol.update_frame(
        3, 2, "e1", "2026-11-23T12:00:00.000Z", {"orders": [{"id": "o1"}]}
    )
    text = protocol.encode(frame, Format.JSON)
    packed = protocol.encode(frame, Format.MSGPACK)
    assert isinstance(text, str)
    assert isinstance(packed, bytes)
    assert orjson.loads(text) == msgpack.unpackb(packed) == frame


subscriptions = st.dictionaries(
    st.sampled_from(protocol.CHANNEL_NAMES),
    st.one_of(st.none(), st.frozensets(st.sampled_from(SYMBOLS), min_size=1)),
).map(lambda d: {k: (None if k in ("account",) else v) for k, v in d.items()})


@settings(max_examples=500, deadline=None)
@given(
    st.lists(accepted_records, max_size=30), st.lists(accepted_records, max_size=30), subscriptions
)
def test_filtering_commutes_with_applying(
    first: list[Accepted], then: list[Accepted], subscription: protocol.Subscription
) -> None:
    # given a state, its snapshot, and the update that follows
    state = TradingState(cadences=("web",), max_orders=3)
    for record in first:
        state.put(record)
    state.take_diff("web")
    before = state.snapshot()
    for record in then:
        state.put(record)
    changes = state.take_diff("web").changes
    # when a narrowed client gets the filtered snapshot and the filtered changes
    view = copy.deepcopy(protocol.filter_snapshot(before, subscription))
    apply_changes(view, protocol.filter_changes(changes, subscription))
    # then it holds exactly the filtered state
    assert view == protocol.filter_snapshot(state.snapshot(), subscription)


def test_subscription_size_counts_channels_and_narrowed_symbols() -> None:
    assert protocol.subscription_size(EVERYTHING) == 5
    assert protocol.subscription_size({}) == 0
    both = {"orders": None, "market_data": frozenset({"BTCUSDT", "ETHUSDT"})}
    assert protocol.subscription_size(both) == 3


def test_a_notice_is_one_line_of_plain_text() -> None:
    notice = protocol.parse_notice({"level": "warning", "text": "<b>halt</b> é " + "x" * 486})
    assert notice.frame() == {"type": "notice", "level": "warning", "text": notice.text}
    assert len(notice.text) == protocol.NOTICE_MAX_CHARS


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (["info", "x"], "a notice is a JSON object"),
        (None, "a notice is a JSON object"),
        ({"text": "x"}, "level must be one of"),
        ({"level": "error", "text": "x"}, "level must be one of"),
        ({"level": ["info"], "text": "x"}, "level must be one of"),
        ({"level": "info"}, "text must be a string"),
        ({"level": "info", "text": 5}, "text must be a string"),
        ({"level": "info", "text": ["x"]}, "text must be a string"),
        ({"level": "info", "text": ""}, "text must be 1 to 500"),
        ({"level": "info", "text": "x" * 501}, "text must be 1 to 500"),
        ({"level": "info", "text": "line\n"}, "control characters"),
        ({"level": "info", "text": "a\tb"}, "control characters"),
        ({"level": "info", "text": "\x1b[31mred"}, "control characters"),
        ({"level": "info", "text": "nul\x00"}, "control characters"),
        ({"level": "info", "text": "c1\x85"}, "control characters"),
        ({"level": "info", "text": "abc\u202edcba"}, "control characters"),
        ({"level": "info", "text": "lone \ud800"}, "lone surrogates"),
    ],
)
def test_a_bad_notice_is_refused_saying_why(body: object, why: str) -> None:
    with pytest.raises(protocol.NoticeError, match=why):
        protocol.parse_notice(body)
