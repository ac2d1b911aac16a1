"""A demo trading desk: market data, orders, positions, an account and strategies.

Pure: no I/O; randomness from one seeded `random.Random` and time from the caller's clock, so
the same seed and clock give the same records. Every method returns contract 3.1 records (plain
JSON objects) ready to publish or serve. Orders fill into positions, positions follow the mark
price, and the account follows the positions, so the numbers on the dashboard add up. This
module is the desk's steps (what each call does); its entities and their records are
`entities.py`, its instruments `market.py`.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Final

from aggregation.simulator import market
from aggregation.simulator.entities import (
    LEVERAGE,
    Side,
    SimOrder,
    SimPosition,
    SimStrategy,
    lot_size,
)
from shared.clock import rfc3339
from shared.core.records import Record

OPEN_STATUSES: Final = frozenset({"NEW", "PARTIALLY_FILLED"})

# Orders trade the first few symbols only: a desk holds a handful of positions, not twenty.
TRADED_SYMBOLS: Final = 6
MAX_OPEN_ORDERS: Final = 20  # keeps the order list readable on the dashboard
ORDER_MEMORY: Final = 1000  # orders kept for GetOrders; the worker keeps the newest 100
NEW_ORDER_PROBABILITY: Final = 0.6  # per step_orders(): about one new order a second at 2 Hz
MARKET_ORDER_SHARE: Final = 0.3  # the rest are limit orders
CLOSE_PROBABILITY: Final = 0.3  # a new order closes an open position; keeps positions few
FILL_PROBABILITY: Final = 0.35  # per step, for a resting limit order
CANCEL_PROBABILITY: Final = 0.04  # per step, for a resting limit order
PARTIAL_FILL_PROBABILITY: Final = 0.5  # a limit fill takes part of the remaining quantity
ORDER_NOTIONAL: Final = (500.0, 20_000.0)  # USDT range of one order
STARTING_BALANCES: Final = {"USDT": 100_000.0, "USDC": 25_000.0}
STRATEGY_NAMES: Final = (
    ("strat-momentum", "Momentum"),
    ("strat-mean-reversion", "Mean reversion"),
    ("strat-market-making", "Market making"),
    ("strat-arbitrage", "Triangular arbitrage"),
    ("strat-breakout", "Breakout"),
)
WIN_PROBABILITY: Final = 0.55  # a modestly profitable book, so the pnl drifts upwards


class Desk:
    """The demo desk's whole state; each `step_*`/`tick_*` call advances it and returns changes."""

    def __init__(
        self, *, symbols: int, seed: int | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self._rng = random.Random(seed)
        self._clock = clock
        now = self._now()
        self._market = {
            name: market.new_instrument(name, base, now)
            for name, base in market.symbol_names(symbols, self._rng)
        }
        self.symbols: tuple[str, ...] = tuple(self._market)
        self._cursor = 0
        self._orders: dict[str, SimOrder] = {}  # by id, oldest first
        self._next_order = 1
        self._positions: dict[str, SimPosition] = {}
        self._changed_positions: set[str] = set()
        self._closed: list[Record] = []  # quantity-0 records not yet returned
        self._balances = dict(STARTING_BALANCES)
        self._realized = 0.0
        self._strategies = [
            SimStrategy(sid, name, "RUNNING", 0.0, 0, 0, now)
            for sid, name in STRATEGY_NAMES[: self._rng.randint(3, 5)]
        ]

    # --- market ---------------------------------------------------------------------------
    def tick_market(self, count: int = 1) -> list[Record]:
        """Move `count` symbols, round-robin, and return their MarketData records."""
        now = self._now()
        records = []
        for _ in range(count):
            instrument = self._market[self.symbols[self._cursor]]
            self._cursor = (self._cursor + 1) % len(self.symbols)
            market.step(instrument, self._rng, now)
            records.append(instrument.record())
        return records

    def market_data(self) -> list[Record]:
        """The MarketData record of every symbol, as it is now."""
        return [instrument.record() for instrument in self._market.values()]

    def order_book(self, symbol: str) -> Record:
        """A small order book of `symbol` around its current quotes."""
        return market.order_book(self._market[symbol], self._rng)

    def trade(self, symbol: str) -> Record:
        """A public trade of `symbol` at its current price."""
        return market.trade(self._market[symbol], self._rng)

    def random_symbol(self) -> str:
        """Any symbol, for the occasional order book or trade message."""
        return self._rng.choice(self.symbols)

    # --- orders ---------------------------------------------------------------------------
    def step_orders(self) -> list[Record]:
        """Maybe place an order, then fill or cancel resting ones; return the changed orders."""
        now = self._now()
        changed: dict[str, SimOrder] = {}
        for order in [o for o in self._orders.values() if o.status in OPEN_STATUSES]:
            if self._work(order, now):
                changed[order.id] = order
        open_orders = sum(o.status in OPEN_STATUSES for o in self._orders.values())
        if open_orders < MAX_OPEN_ORDERS and self._rng.random() < NEW_ORDER_PROBABILITY:
            order = self._place(now)
            changed[order.id] = order
        while len(self._orders) > ORDER_MEMORY:
            del self._orders[next(iter(self._orders))]
        return [order.record() for order in changed.values()]

    def orders_snapshot(self, limit: int) -> list[Record]:
        """The newest `limit` orders, oldest first (the order they were placed in)."""
        orders = list(self._orders.values())[-limit:] if limit > 0 else []
        return [order.record() for order in orders]

    def _place(self, now: str) -> SimOrder:
        traded = self.symbols[:TRADED_SYMBOLS]
        closable = [p for p in self._positions.values() if p.symbol in traded]
        if closable and self._rng.random() < CLOSE_PROBABILITY:
            position = self._rng.choice(closable)
            symbol, lots = position.symbol, abs(position.lots)
            side: Side = "SELL" if position.lots > 0 else "BUY"
        else:
            symbol, side = self._rng.choice(traded), self._rng.choice(("BUY", "SELL"))
            lots = 0
        instrument = self._market[symbol]
        lot = lot_size(instrument.base)
        if not lots:
            notional = self._rng.uniform(*ORDER_NOTIONAL)
            lots = max(1, round(notional / instrument.last / lot))
        kind = "MARKET" if self._rng.random() < MARKET_ORDER_SHARE else "LIMIT"
        if kind == "MARKET":  # takes the quote
            price = instrument.ask if side == "BUY" else instrument.bid
        else:  # rests a few ticks behind the quote
            offset = self._rng.randint(0, 5) * instrument.tick
            price = instrument.bid - offset if side == "BUY" else instrument.ask + offset
        order = SimOrder(
            id=f"ord-{self._next_order:06d}",
            symbol=symbol,
            side=side,
            type=kind,
            price=instrument.round_price(price),
            lot=lot,
            lots=lots,
            filled_lots=0,
            status="NEW",
            created_at=now,
            updated_at=now,
        )
        self._next_order += 1
        self._orders[order.id] = order
        return order

    def _work(self, order: SimOrder, now: str) -> bool:
        roll = self._rng.random()
        if order.type == "LIMIT" and roll < CANCEL_PROBABILITY:
            order.status, order.updated_at = "CANCELED", now
            return True
        if order.type == "LIMIT" and roll > CANCEL_PROBABILITY + FILL_PROBABILITY:
            return False
        remaining = order.lots - order.filled_lots
        lots = remaining  # a market order sweeps the book at once
        if order.type == "LIMIT" and self._rng.random() < PARTIAL_FILL_PROBABILITY:
            lots = max(1, round(remaining * self._rng.uniform(0.2, 0.6)))
        order.filled_lots += lots
        order.status = "FILLED" if order.filled_lots == order.lots else "PARTIALLY_FILLED"
        order.updated_at = now
        self._fill(order.symbol, order.side, lots, order.lot, order.price, now)
        return True

    # --- positions ------------------------------------------------------------------------
    def step_positions(self) -> list[Record]:
        """Mark positions to market; return those that changed, and closed ones (quantity 0)."""
        now = self._now()
        records, self._closed = self._closed, []
        for position in self._positions.values():
            mark = self._market[position.symbol].last
            if position.symbol in self._changed_positions or mark != position.mark:
                position.mark, position.updated_at = mark, now
                records.append(position.record(mark))
        self._changed_positions.clear()
        return records

    def positions(self) -> list[Record]:
        """The Position record of every open position, as it is now."""
        return [p.record(self._market[p.symbol].last) for p in self._positions.values()]

    def _fill(self, symbol: str, side: Side, lots: int, lot: float, price: float, now: str) -> None:
        signed = lots if side == "BUY" else -lots
        self._changed_positions.add(symbol)
        position = self._positions.get(symbol)
        if position is None:
            self._positions[symbol] = SimPosition(symbol, lot, signed, price, 0.0, price, now)
            return
        position.updated_at = now
        if (position.lots > 0) == (signed > 0):  # adding: the entry becomes the average price
            total = position.lots + signed
            position.entry = (position.entry * position.lots + price * signed) / total
            position.lots = total
            return
        closing = min(abs(signed), abs(position.lots))
        direction = 1 if position.lots > 0 else -1
        pnl = direction * (price - position.entry) * closing * lot
        position.realized += pnl
        self._realized += pnl
        self._balances["USDT"] += pnl
        if closing == abs(position.lots):  # closed: one last record says so with quantity 0
            self._closed.append(position.record(price) | {"quantity": 0.0, "unrealized_pnl": 0.0})
            del self._positions[symbol]
            self._changed_positions.discard(symbol)
            if closing < lots:  # the rest opens the other way at this price
                rest = signed + position.lots
                self._positions[symbol] = SimPosition(symbol, lot, rest, price, 0.0, price, now)
                self._changed_positions.add(symbol)
            return
        position.lots += signed

    # --- account --------------------------------------------------------------------------
    def account(self) -> Record:
        """The Account record: balances plus the positions' unrealized pnl and margin."""
        positions = self.positions()
        unrealized = sum(p["unrealized_pnl"] for p in positions)
        margin = sum(p["quantity"] * p["mark_price"] / LEVERAGE for p in positions)
        balances = {asset: round(amount, 6) for asset, amount in self._balances.items()}
        total = sum(balances.values()) + unrealized
        return {
            "total_balance": round(total, 6),
            "available_balance": round(total - margin, 6),
            "margin_used": round(margin, 6),
            "unrealized_pnl": round(unrealized, 6),
            "realized_pnl": round(self._realized, 6),
            "balances": balances,
            "updated_at": self._now(),
        }

    # --- strategies -----------------------------------------------------------------------
    def step_strategies(self) -> list[Record]:
        """Let running strategies trade, pause or resume a few; return the changed ones."""
        now = self._now()
        changed = []
        for strategy in self._strategies:
            roll = self._rng.random()
            if roll < 0.02:  # now and then an operator pauses or resumes one
                strategy.status = "PAUSED" if strategy.status == "RUNNING" else "RUNNING"
            elif strategy.status != "RUNNING" or roll > 0.6:
                continue
            else:
                for _ in range(self._rng.randint(1, 3)):
                    won = self._rng.random() < WIN_PROBABILITY
                    strategy.trades += 1
                    strategy.wins += won
                    gain = self._rng.uniform(5.0, 120.0)
                    strategy.pnl += gain if won else -gain
            strategy.updated_at = now
            changed.append(strategy.record())
        return changed

    def strategies(self) -> list[Record]:
        """The Strategy record of every strategy, as it is now."""
        return [strategy.record() for strategy in self._strategies]

    def _now(self) -> str:
        return rfc3339(self._clock())
