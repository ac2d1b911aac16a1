"""The demo desk's entities — orders, positions, strategies — and the contract 3.1 record of each.

Plain mutable dataclasses that `desk.py` steps; each one's `record()` is what is published or
served. Quantities are whole lots (`lot_size`), so `filled == quantity` is exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final, Literal

from shared.core.records import Record

Side = Literal["BUY", "SELL"]
LEVERAGE: Final = 10.0  # margin_used = notional / LEVERAGE
MAINTENANCE_MARGIN: Final = 0.005  # places the liquidation price, as a 10x perpetual would


@dataclass(slots=True)
class SimOrder:
    """An order the desk placed; `record()` is its contract 3.1 Order."""

    id: str
    symbol: str
    side: Side
    type: str
    price: float
    lot: float  # quantity step; quantities are whole lots, so `filled == quantity` is exact
    lots: int
    filled_lots: int
    status: str
    created_at: str
    updated_at: str

    def record(self) -> Record:
        """The Order record."""
        places = decimals(self.lot)
        return {
            "id": self.id,
            "symbol": self.symbol,
            "side": self.side,
            "type": self.type,
            "price": self.price,
            "quantity": round(self.lots * self.lot, places),
            "filled": round(self.filled_lots * self.lot, places),
            "status": self.status,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


@dataclass(slots=True)
class SimPosition:
    """An open position; `record(mark)` is its contract 3.1 Position at that mark price."""

    symbol: str
    lot: float
    lots: int  # signed: positive long, negative short
    entry: float
    realized: float
    mark: float  # as of the last record returned
    updated_at: str

    def record(self, mark: float) -> Record:
        """The Position record at `mark`, the liquidation price as a 10x perpetual's."""
        quantity = round(abs(self.lots) * self.lot, decimals(self.lot))
        direction = 1.0 if self.lots > 0 else -1.0
        entry = round(self.entry, 8)
        liquidation = entry * (1 - direction * (1 / LEVERAGE - MAINTENANCE_MARGIN))
        return {
            "symbol": self.symbol,
            "side": "LONG" if self.lots > 0 else "SHORT",
            "quantity": quantity,
            "entry_price": entry,
            "mark_price": mark,
            "unrealized_pnl": round(direction * (mark - entry) * quantity, 6),
            "realized_pnl": round(self.realized, 6),
            "liquidation_price": round(liquidation, 8),
            "updated_at": self.updated_at,
        }


@dataclass(slots=True)
class SimStrategy:
    """A strategy of the desk; `record()` is its contract 3.1 Strategy."""

    id: str
    name: str
    status: str
    pnl: float
    trades: int
    wins: int
    updated_at: str

    def record(self) -> Record:
        """The Strategy record, its win rate from the trades so far."""
        return {
            "id": self.id,
            "name": self.name,
            "status": self.status,
            "pnl": round(self.pnl, 2),
            "trades": self.trades,
            "win_rate": round(self.wins / self.trades, 4) if self.trades else 0.0,
            "updated_at": self.updated_at,
        }


def lot_size(base_price: float) -> float:
    """The quantity step of an instrument trading near `base_price`."""
    # The quantity step: about 1/100 of a 1000 USDT order, a power of ten (BTC 0.0001, DOGE 10).
    return float(10.0 ** (math.floor(math.log10(1000 / base_price)) - 2))


def decimals(lot: float) -> int:
    """The decimal places of a quantity in whole `lot`s."""
    return max(0, -round(math.log10(lot)))
