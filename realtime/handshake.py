"""The `/ws` handshake: the query string, and access control's answer (access.gate).

The consumer (realtime/consumers.py) asks these two things of a connection before it is open:
what it asks for (`type`, `format`, `channels`, and `since`/`epoch` to resume, contract 4.1) and
whether it may have it (credentials, origin, channel scope, limits). A malformed query is an
`error` frame and close 1008; a refusal is the contract's close code, sent after an accept so
that a browser can read it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import parse_qs

from access import gate
from access.gate import AccessLimits, Admission, Refusal
from access.metrics import refused
from realtime import metrics, protocol
from realtime.close_codes import CLOSE_POLICY
from realtime.protocol import ErrorCode, Format, ProtocolError, ResumeRequest, Subscription
from shared.cadences import CADENCES

RawQuery = dict[str, list[str]]


@dataclass(frozen=True, slots=True)
class Query:
    """What a connection asks for. A malformed resume is not fatal: an error frame, then a
    normal snapshot (`resume_error`)."""

    raw: RawQuery
    cadence: str
    fmt: Format
    subscription: Subscription
    resume: ResumeRequest | None
    resume_error: ProtocolError | None


class Closable(Protocol):
    """What the handshake needs of the consumer to answer a refused connection."""

    async def accept(self) -> None:
        """Accept the WebSocket."""

    async def send(self, text_data: str | None = None) -> None:
        """Send one text frame."""

    async def close(self, code: int | None = None, reason: str | None = None) -> None:
        """Close the WebSocket with `code`."""


def raw_query(scope: dict[str, Any]) -> RawQuery:
    """The handshake's query string, parsed (repeated names keep every value)."""
    return parse_qs(scope.get("query_string", b"").decode("latin-1"))


def parse_query(raw: RawQuery, *, max_subscriptions: int) -> Query:
    """The connection's query; `ProtocolError` for a bad `type`, `format` or `channels`."""
    cadence = _single(raw, "type", "web")
    if cadence not in CADENCES:
        raise ProtocolError(ErrorCode.BAD_MESSAGE, "type must be web or tui")
    fmt = _single(raw, "format", "json")
    if fmt not in (Format.JSON.value, Format.MSGPACK.value):
        raise ProtocolError(ErrorCode.BAD_MESSAGE, "format must be json or msgpack")
    channels = raw.get("channels")
    subscription = protocol.parse_query_channels(channels[-1] if channels else None)
    if protocol.subscription_size(subscription) > max_subscriptions:
        raise ProtocolError(
            ErrorCode.TOO_MANY_SUBSCRIPTIONS,
            f"at most {max_subscriptions} subscriptions per connection",
        )
    resume: ResumeRequest | None = None
    resume_error: ProtocolError | None = None
    try:
        resume = protocol.parse_resume(_optional(raw, "since"), _optional(raw, "epoch"))
    except ProtocolError as exc:  # answered with an error frame, then a normal snapshot
        resume_error = exc
    return Query(raw, cadence, Format(fmt), subscription, resume, resume_error)


async def answer_malformed(consumer: Closable, raw: RawQuery, error: ProtocolError) -> None:
    """An `error` frame (JSON: the format may be what was wrong), then close 1008."""
    await consumer.accept()
    frame = protocol.error_frame(error.code, error.message)
    await consumer.send(text_data=str(protocol.encode(frame, Format.JSON)))
    metrics.sent(_client_type(raw), "error")
    await consumer.close(code=CLOSE_POLICY)


async def admit(
    scope: dict[str, Any], query: Query, limits: AccessLimits
) -> tuple[Admission, Subscription] | Refusal:
    """Access control (access.gate): credentials, origin, limits, channel scope. Admitted, the
    connection holds a slot of `limits` until `limits.close(admission)`; its subscription is
    the one asked for, or without `channels` every channel the credential may take."""
    decision = await gate.admit(scope, query.raw, limits)
    if isinstance(decision, Refusal):
        return decision
    credential = decision.credential
    subscription = query.subscription
    if "channels" in query.raw:
        refusal = gate.channel_refusal(credential, subscription)
        if refusal is not None:
            return refusal
    else:  # the default "every channel" means every channel this credential may take
        subscription = credential.narrow(subscription)
    refusal = limits.open(decision)
    if refusal is not None:
        return refusal
    return decision, subscription


async def answer_refused(consumer: Closable, refusal: Refusal) -> None:
    """Accept only to close with the contract's code, which a browser can read."""
    await consumer.accept()
    refused(refusal.code)
    await consumer.close(code=refusal.code, reason=refusal.reason)


def _client_type(raw: RawQuery) -> str:
    """The cadence asked for, for metric labels: bounded, so `unknown` for anything else."""
    cadence = _single(raw, "type", "web")
    return cadence if cadence in CADENCES else "unknown"


def _single(raw: RawQuery, name: str, default: str) -> str:
    values = raw.get(name)
    return values[-1] if values else default


def _optional(raw: RawQuery, name: str) -> str | None:
    values = raw.get(name)
    return values[-1] if values else None
