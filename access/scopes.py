"""A token's channel scope: the channels it may take and, within one, the symbols (pure).

A scope is written as a subscription is (contract section 4): `["market_data:BTCUSDT",
"account"]`, parsed by the same `realtime.protocol.parse_channels`, so that a token can be
narrowed exactly as far as a socket can. `None` is the unrestricted scope (an empty list in
the database). Every entry point asks the same three questions of it: does it cover this
channel (and symbol), what of this subscription does it not cover, and what is left of a
subscription inside it.
"""

from __future__ import annotations

from collections.abc import Iterable

from realtime.protocol import ProtocolError, Subscription, parse_channels

Scope = Subscription | None  # None: every channel, every symbol


def parse_scope(items: Iterable[object]) -> Scope:
    """The scope of a token's stored `channels` list; ValueError naming a bad entry."""
    items = list(items)
    if not items:
        return None
    try:
        return parse_channels(items)
    except ProtocolError as exc:
        raise ValueError(exc.message) from None


def covers(scope: Scope, channel: str, symbols: frozenset[str] | None) -> bool:
    """Whether `scope` lets its holder take `channel` narrowed to `symbols` (None: all)."""
    if scope is None:
        return True
    if channel not in scope:
        return False
    allowed = scope[channel]
    return allowed is None or (symbols is not None and symbols <= allowed)


def uncovered(scope: Scope, subscription: Subscription) -> list[str]:
    """The channels of `subscription` that `scope` does not cover, for a refusal's reason."""
    return sorted(
        name for name, symbols in subscription.items() if not covers(scope, name, symbols)
    )


def narrow(scope: Scope, subscription: Subscription) -> Subscription:
    """What is left of `subscription` inside `scope` (a default subscription, a snapshot)."""
    if scope is None:
        return subscription
    result: dict[str, frozenset[str] | None] = {}
    for name, symbols in subscription.items():
        if name not in scope:
            continue
        allowed = scope[name]
        kept = symbols if allowed is None else (allowed if symbols is None else symbols & allowed)
        if kept is None or kept:
            result[name] = kept
    return result
