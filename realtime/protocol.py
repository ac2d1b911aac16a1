"""The WebSocket protocol of contract section 4, free of Django and I/O.

Parsing client messages and query parameters, subscriptions (with symbol narrowing), filtering
snapshots and changes to a subscription, the continuity check of design principle 4, and frame
encoding in JSON (text) or MessagePack (binary).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final, Literal

import msgpack
import orjson

from shared.core.records import KEY_PATTERN, Channel

CHANNEL_NAMES: Final = tuple(channel.value for channel in Channel)
# Channels whose entities have a symbol (or id) a subscription can be narrowed to; orders are
# narrowed by their `symbol` field (the list stays a list, holding that symbol's orders only).
NARROWABLE: Final = frozenset({"market_data", "positions", "strategies", "orders"})
_KEY_RE: Final = re.compile(KEY_PATTERN)
_MAX_CHANNEL_ITEMS: Final = 256  # one subscribe may name this many channel/symbol items


class ErrorCode(StrEnum):
    """The error codes of contract section 4."""

    BAD_JSON = "bad_json"
    BAD_MESSAGE = "bad_message"
    UNKNOWN_CHANNEL = "unknown_channel"
    RATE_LIMITED = "rate_limited"
    TOO_LARGE = "too_large"
    TOO_MANY_SUBSCRIPTIONS = "too_many_subscriptions"


class ProtocolError(Exception):
    """A client message the server refuses; becomes an `error` frame."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Format(StrEnum):
    """Wire formats: JSON in text frames, MessagePack in binary frames."""

    JSON = "json"
    MSGPACK = "msgpack"


# channel -> the symbols it is narrowed to, or None for the whole channel
Subscription = Mapping[str, frozenset[str] | None]
EVERYTHING: Final[Subscription] = dict.fromkeys(CHANNEL_NAMES)


@dataclass(frozen=True, slots=True)
class ClientMessage:
    """A parsed client message; `channels` is set for subscribe and unsubscribe."""

    type: Literal["subscribe", "unsubscribe", "refresh", "ping"]
    channels: Subscription | None = None


def parse_channels(items: Iterable[object]) -> dict[str, frozenset[str] | None]:
    """Parse `["market_data", "positions:ETHUSDT", ...]` into a subscription."""
    result: dict[str, frozenset[str] | None] = {}
    for count, item in enumerate(items):
        if count >= _MAX_CHANNEL_ITEMS:
            raise ProtocolError(ErrorCode.BAD_MESSAGE, f"at most {_MAX_CHANNEL_ITEMS} channels")
        if not isinstance(item, str):
            raise ProtocolError(ErrorCode.BAD_MESSAGE, "channels must be strings")
        name, sep, symbol = item.partition(":")
        if name not in CHANNEL_NAMES:
            raise ProtocolError(ErrorCode.UNKNOWN_CHANNEL, f"unknown channel {item[:80]!r}")
        if not sep:
            result[name] = None
            continue
        if name not in NARROWABLE or not _KEY_RE.match(symbol):
            raise ProtocolError(ErrorCode.UNKNOWN_CHANNEL, f"unknown channel {item[:80]!r}")
        if name in result and result[name] is None:
            continue  # the whole channel already includes this symbol
        result[name] = (result.get(name) or frozenset()) | {symbol}
    return result


def parse_query_channels(text: str | None) -> Subscription:
    """The `channels=` query parameter: comma-separated; absent means every channel."""
    if text is None:
        return EVERYTHING
    return parse_channels(part for part in text.split(",") if part)


def parse_client_message(data: str | bytes, *, max_bytes: int) -> ClientMessage:
    """Parse one client frame (JSON text, or JSON in a binary frame)."""
    if len(data) > max_bytes:
        raise ProtocolError(ErrorCode.TOO_LARGE, f"messages are limited to {max_bytes} bytes")
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(ErrorCode.BAD_JSON, f"not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ProtocolError(ErrorCode.BAD_MESSAGE, "a message is a JSON object")
    kind = obj.get("type")
    if kind in ("refresh", "ping"):
        return ClientMessage(kind)
    if kind in ("subscribe", "unsubscribe"):
        channels = obj.get("channels")
        if not isinstance(channels, list):
            raise ProtocolError(ErrorCode.BAD_MESSAGE, f"{kind} needs a list of channels")
        return ClientMessage(kind, parse_channels(channels))
    shown = kind[:40] if isinstance(kind, str) else type(kind).__name__
    raise ProtocolError(ErrorCode.BAD_MESSAGE, f"unknown message type {shown!r}")


def subscribe(current: Subscription, added: Subscription) -> Subscription:
    """The union of two subscriptions."""
    result = dict(current)
    for name, symbols in added.items():
        if name in result and result[name] is None:
            continue
        result[name] = None if symbols is None else (result.get(name) or frozenset()) | symbols
    return result


def unsubscribe(current: Subscription, removed: Subscription) -> Subscription:
    """Remove channels, or symbols from a narrowed channel.

    Removing one symbol from a whole-channel subscription changes nothing: "every symbol but
    one" is not a subscription this protocol can express.
    """
    result = dict(current)
    for name, symbols in removed.items():
        if symbols is None:
            result.pop(name, None)
            continue
        kept = result.get(name)
        if kept is None:
            continue
        remaining = kept - symbols
        if remaining:
            result[name] = remaining
        else:
            del result[name]
    return result


def subscription_size(subscription: Subscription) -> int:
    """Distinct subscriptions: one per whole channel, one per symbol of a narrowed channel."""
    return sum(1 if symbols is None else len(symbols) for symbols in subscription.values())


def is_everything(subscription: Subscription) -> bool:
    """Whether it takes every channel whole (then pre-encoded frames fit it as they are)."""
    return len(subscription) == len(CHANNEL_NAMES) and all(v is None for v in subscription.values())


def filter_snapshot(data: Mapping[str, Any], subscription: Subscription) -> dict[str, Any]:
    """The part of a snapshot's `data` that `subscription` takes."""
    result: dict[str, Any] = {}
    for name, symbols in subscription.items():
        value = data.get(name)
        if value is None:
            continue
        result[name] = value if symbols is None else _narrow(name, value, symbols)
    return result


def filter_changes(changes: Mapping[str, Any], subscription: Subscription) -> dict[str, Any]:
    """The part of an update's `changes` that `subscription` takes."""
    result: dict[str, Any] = {}
    for path, value in changes.items():
        name, _, rest = path.partition(".")
        if name not in subscription:
            continue
        symbols = subscription[name]
        if symbols is None:
            result[path] = value
        elif not rest:  # a whole channel: narrow its value
            result[path] = None if value is None else _narrow(name, value, symbols)
        elif name != "orders" and rest.partition(".")[0] in symbols:
            result[path] = value
    return result


def _narrow(name: str, value: Any, symbols: frozenset[str]) -> Any:
    if name == "orders":
        return [order for order in value if order.get("symbol") in symbols]
    return {key: record for key, record in value.items() if key in symbols}


class Continuity:
    """Where a client's view stands in the seq stream (design principle 4): a seq and the
    lineage (epoch, contract 4.1) it belongs to."""

    __slots__ = ("epoch", "position")

    def __init__(self, position: int, epoch: str = "") -> None:
        self.position = position
        self.epoch = epoch

    def check(
        self, base_seq: int, seq: int, epoch: str | None = None
    ) -> Literal["forward", "skip", "resync"]:
        """Decide what to do with an update from `base_seq` to `seq` (of lineage `epoch`, when
        given).

        forward: it applies to what the client has; skip: the client already has it (an older
        or repeated update, e.g. the other cadence's); resync: something in between was lost,
        or the update is of another lineage (its seqs say nothing about the client's).
        """
        if epoch is not None and epoch != self.epoch:
            return "resync"
        if seq <= self.position:
            return "skip"
        if base_seq <= self.position:
            return "forward"
        return "resync"


def snapshot_frame(
    seq: int,
    epoch: str,
    timestamp: str,
    data: Mapping[str, Any],
    *,
    refused: str | None = None,
) -> dict[str, Any]:
    """The `snapshot` server message; `refused` is the reason a resume was refused (4.1)."""
    frame: dict[str, Any] = {"type": "snapshot", "seq": seq, "epoch": epoch}
    if refused is not None:
        frame["recovered"] = False
        frame["reason"] = refused
    frame["timestamp"] = timestamp
    frame["data"] = data
    return frame


def update_frame(
    seq: int, base_seq: int, epoch: str, timestamp: str, changes: Mapping[str, Any]
) -> dict[str, Any]:
    """The `update` server message: applies to a state at any `base_seq <= S < seq`."""
    return {
        "type": "update",
        "seq": seq,
        "base_seq": base_seq,
        "epoch": epoch,
        "timestamp": timestamp,
        "changes": changes,
    }


def recovered_frame(since: int, seq: int, epoch: str) -> dict[str, Any]:
    """The `recovered` server message: the missed updates from `since` to `seq` follow."""
    return {"type": "recovered", "since": since, "seq": seq, "epoch": epoch}


# A resume's `since`: a seq as clients hold it, a JSON-safe integer (below 2**53, so exact in
# JavaScript), in plain decimal digits. An epoch is the worker's opaque name: a short token of
# the characters of a symbol (KEY_PATTERN).
MAX_SEQ: Final = 2**53 - 1
_SINCE_RE: Final = re.compile(r"[0-9]{1,16}")


@dataclass(frozen=True, slots=True)
class ResumeRequest:
    """`?since=SEQ&epoch=E`: the client holds the state at `since` of lineage `epoch`."""

    since: int
    epoch: str


def parse_resume(since: str | None, epoch: str | None) -> ResumeRequest | None:
    """The `since` and `epoch` query parameters (contract 4.1); None when neither is given.

    Raises ProtocolError (bad_message) for a `since` without `epoch` or the reverse, a `since`
    that is not a decimal seq up to 2**53 - 1, or an epoch that is not 1..64 of `[A-Za-z0-9_-]`.
    """
    if since is None and epoch is None:
        return None
    if since is None or epoch is None:
        raise ProtocolError(ErrorCode.BAD_MESSAGE, "since and epoch go together")
    if not _SINCE_RE.fullmatch(since) or int(since) > MAX_SEQ:
        raise ProtocolError(
            ErrorCode.BAD_MESSAGE, f"since must be a seq: decimal digits up to {MAX_SEQ}"
        )
    if not _KEY_RE.match(epoch):
        raise ProtocolError(
            ErrorCode.BAD_MESSAGE, "epoch must be the one a frame carried (1-64 of A-Z a-z 0-9 _ -)"
        )
    return ResumeRequest(int(since), epoch)


def error_frame(code: ErrorCode, message: str) -> dict[str, Any]:
    """The `error` server message."""
    return {"type": "error", "code": code.value, "message": message}


PONG: Final = {"type": "pong"}

NOTICE_LEVELS: Final = ("info", "warning")
NOTICE_MAX_CHARS: Final = 500
# What a notice's text may not hold: C0 and C1 controls and DEL (a newline included: a notice is
# one line), and the bidirectional overrides and isolates that make text display in another
# order than it reads ("Trojan Source"). Written with escapes so that the same pattern serves
# Python here and the OpenAPI schema (ECMA-262, and the Rust regex schemathesis validates with).
NOTICE_TEXT_PATTERN: Final = r"^[^\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]*$"
_NOTICE_TEXT_RE: Final = re.compile(NOTICE_TEXT_PATTERN)
# Lone surrogates (a JSON "\ud800" escape) cannot be encoded as UTF-8; a schema pattern cannot
# name them (the Rust regex has no surrogates), so they have their own check.
_SURROGATE_RE: Final = re.compile("[\ud800-\udfff]")


class NoticeError(ValueError):
    """A notice refused (REST answers 400 with it; the hub drops a foreign one)."""


@dataclass(frozen=True, slots=True)
class Notice:
    """A staff notice for every connected client: one line of plain text."""

    level: Literal["info", "warning"]
    text: str

    def frame(self) -> dict[str, Any]:
        """The `notice` server message."""
        return {"type": "notice", "level": self.level, "text": self.text}


def parse_notice(obj: object) -> Notice:
    """Check `{"level": "info"|"warning", "text": "..."}`; raise NoticeError saying what is wrong.

    Other keys are ignored. The text is 1..NOTICE_MAX_CHARS characters without control
    characters; it is plain text, which clients must display as text (never as markup).
    """
    if not isinstance(obj, Mapping):
        raise NoticeError("a notice is a JSON object with level and text")
    level, text = obj.get("level"), obj.get("text")
    if level not in NOTICE_LEVELS:
        raise NoticeError(f"level must be one of {', '.join(NOTICE_LEVELS)}")
    if not isinstance(text, str):
        raise NoticeError("text must be a string")
    if not 1 <= len(text) <= NOTICE_MAX_CHARS:
        raise NoticeError(f"text must be 1 to {NOTICE_MAX_CHARS} characters")
    if not _NOTICE_TEXT_RE.fullmatch(text):
        raise NoticeError("text must not contain control characters")
    if _SURROGATE_RE.search(text):
        raise NoticeError("text must not contain lone surrogates (not Unicode text)")
    return Notice(level, text)


def encode(frame: Mapping[str, Any], fmt: Format) -> str | bytes:
    """Encode a frame: JSON as text (str), MessagePack as bytes."""
    if fmt is Format.JSON:
        return orjson.dumps(frame).decode()
    packed: bytes = msgpack.packb(frame)
    return packed


def size_of(payload: str | bytes) -> int:
    """A frame's size in bytes on the wire (UTF-8 for text), without copying ASCII text."""
    if isinstance(payload, bytes):
        return len(payload)
    return len(payload) if payload.isascii() else len(payload.encode())
