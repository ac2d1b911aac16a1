"""Hypothesis strategies for valid records of every kind, with small value sets so that
unchanged values, reverts, closes and evictions happen often."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from shared.core.records import Accepted, Channel, validate_record

SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT"]
ORDER_IDS = ["o1", "o2", "o3", "o4", "o5"]
STRATEGY_IDS = ["s1", "s2"]
PRICES = st.sampled_from([1.0, 2.0, 3.5])
STAMPS = st.sampled_from(["2026-11-23T12:00:00Z", "2026-11-23T12:00:01.5Z"])


def _optional(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional=fields)


def _merge(*parts: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    return st.tuples(*parts).map(lambda dicts: {k: v for d in dicts for k, v in d.items()})


market_data = _merge(
    st.fixed_dictionaries({"symbol": st.sampled_from(SYMBOLS), "last_price": PRICES}),
    _optional(bid_price=PRICES, ask_price=PRICES, updated_at=STAMPS, venue=st.just("x")),
)
orders = _merge(
    st.fixed_dictionaries(
        {
            "id": st.sampled_from(ORDER_IDS),
            "symbol": st.sampled_from(SYMBOLS),
            "side": st.sampled_from(["BUY", "SELL"]),
            "quantity": PRICES,
            "status": st.sampled_from(["NEW", "FILLED"]),
        }
    ),
    _optional(price=PRICES, filled=PRICES),
)
positions = _merge(
    st.fixed_dictionaries(
        {"symbol": st.sampled_from(SYMBOLS), "quantity": st.sampled_from([0.0, 1.0, 2.0])}
    ),
    _optional(mark_price=PRICES, unrealized_pnl=PRICES, side=st.sampled_from(["LONG", "SHORT"])),
)
account = _merge(
    st.fixed_dictionaries({"total_balance": PRICES}),
    _optional(
        available_balance=PRICES,
        balances=st.dictionaries(st.sampled_from(["USDT", "BTC"]), PRICES, max_size=2),
    ),
)
strategies = _merge(
    st.fixed_dictionaries(
        {"id": st.sampled_from(STRATEGY_IDS), "status": st.sampled_from(["RUNNING", "STOPPED"])}
    ),
    _optional(pnl=PRICES, trades=st.integers(0, 2)),
)

_BY_CHANNEL = {
    Channel.MARKET_DATA: market_data,
    Channel.ORDERS: orders,
    Channel.POSITIONS: positions,
    Channel.ACCOUNT: account,
    Channel.STRATEGIES: strategies,
}


def _accept(channel: Channel, record: dict[str, Any]) -> Accepted:
    result = validate_record(channel, record)
    assert isinstance(result, Accepted), result
    return result


accepted_records: st.SearchStrategy[Accepted] = st.one_of(
    *(strategy.map(lambda r, c=c: _accept(c, r)) for c, strategy in _BY_CHANNEL.items())
)
