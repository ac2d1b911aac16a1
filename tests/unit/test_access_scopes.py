"""access.scopes: a token's channels, narrowed to symbols, against subscriptions."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from access.scopes import Scope, covers, narrow, parse_scope, uncovered
from realtime.protocol import CHANNEL_NAMES, EVERYTHING, NARROWABLE, Subscription

BTC = frozenset({"BTCUSDT"})


def test_an_empty_list_is_every_channel() -> None:
    assert parse_scope([]) is None
    assert covers(None, "account", None)
    assert narrow(None, EVERYTHING) == EVERYTHING


def test_a_narrowed_scope_covers_its_symbols_only() -> None:
    scope = parse_scope(["market_data:BTCUSDT", "account"])
    assert scope == {"market_data": BTC, "account": None}
    assert covers(scope, "market_data", BTC)
    assert not covers(scope, "market_data", None)  # every symbol
    assert not covers(scope, "market_data", frozenset({"BTCUSDT", "ETHUSDT"}))
    assert not covers(scope, "orders", BTC)
    assert covers(scope, "account", None)
    assert narrow(scope, EVERYTHING) == {"market_data": BTC, "account": None}
    assert narrow(scope, {"market_data": frozenset({"ETHUSDT"})}) == {}
    assert uncovered(scope, {"market_data": None, "orders": None, "account": None}) == [
        "market_data",
        "orders",
    ]


@pytest.mark.parametrize(
    "items",
    [["candles"], ["market_data:"], ["account:main"], ["market_data:a b"], [7], [None]],
)
def test_bad_entries_are_refused(items: list[object]) -> None:
    with pytest.raises(ValueError, match="channel"):
        parse_scope(items)


_symbols = st.frozensets(st.sampled_from(["BTCUSDT", "ETHUSDT", "SOLUSDT"]), min_size=1)


@st.composite
def subscriptions(draw: st.DrawFn) -> Subscription:
    names = draw(st.lists(st.sampled_from(CHANNEL_NAMES), unique=True))
    return {name: draw(st.none() | _symbols) if name in NARROWABLE else None for name in names}


@given(st.none() | subscriptions(), subscriptions())
def test_what_is_narrowed_to_a_scope_is_covered_by_it(scope: Scope, wanted: Subscription) -> None:
    kept = narrow(scope, wanted)
    assert uncovered(scope, kept) == []
    # nothing is added: every kept channel and symbol was asked for
    for name, symbols in kept.items():
        assert name in wanted
        asked = wanted[name]
        assert asked is None or (symbols is not None and symbols <= asked)
    # and what was covered already is kept whole
    if not uncovered(scope, wanted):
        assert kept == wanted
