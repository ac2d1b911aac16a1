"""The demo desk's market: symbols, their prices and 24 h statistics, moved by a random walk.

Pure: randomness comes from the caller's `random.Random`, time from the caller's timestamp.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Final

from shared.core.records import Record

# Rough spot prices in USDT (mid 2024), so the dashboard shows familiar magnitudes.
BASE_PRICES: Final = (
    ("BTCUSDT", 60_000.0),
    ("ETHUSDT", 3_000.0),
    ("SOLUSDT", 150.0),
    ("BNBUSDT", 580.0),
    ("XRPUSDT", 0.55),
    ("ADAUSDT", 0.45),
    ("DOGEUSDT", 0.12),
    ("AVAXUSDT", 35.0),
    ("DOTUSDT", 7.0),
    ("LINKUSDT", 15.0),
    ("LTCUSDT", 80.0),
    ("TRXUSDT", 0.12),
    ("ATOMUSDT", 9.0),
    ("UNIUSDT", 8.0),
    ("ETCUSDT", 27.0),
    ("XLMUSDT", 0.11),
    ("NEARUSDT", 6.0),
    ("APTUSDT", 9.0),
    ("FILUSDT", 5.0),
    ("ARBUSDT", 1.1),
    ("OPUSDT", 2.2),
    ("INJUSDT", 25.0),
    ("AAVEUSDT", 100.0),
    ("SUIUSDT", 1.0),
)

# Six significant digits of price, as exchanges quote majors (BTC 60000.0, DOGE 0.120000).
PRICE_DIGITS: Final = 6
# 5 bp per tick: at 50 ticks/s over 20 symbols a symbol moves ~0.1 % a second, lively but sane.
VOLATILITY_PER_TICK: Final = 0.0005
# Pull towards the base price, so a long demo run stays near familiar prices.
MEAN_REVERSION: Final = 0.002
# Half the bid/ask spread: 1 bp, a liquid pair's typical spread is 1-2 bp.
HALF_SPREAD: Final = 0.0001
# The opening 24 h range: +-2 % around the base price, a quiet day for crypto.
INITIAL_RANGE: Final = 0.02
# Notional traded per tick, in USDT; sets how fast `volume_24h` grows.
NOTIONAL_PER_TICK: Final = 25_000.0


@dataclass(slots=True)
class Instrument:
    """One symbol's market: last price, spread and 24 h statistics."""

    symbol: str
    base: float
    decimals: int  # of prices; the tick size is 10**-decimals
    last: float
    bid: float
    ask: float
    high: float
    low: float
    volume: float
    updated_at: str

    @property
    def tick(self) -> float:
        """The smallest price step."""
        return 10.0**-self.decimals

    def round_price(self, price: float) -> float:
        """Round to a valid price, never below one tick."""
        return max(round(price, self.decimals), self.tick)

    def record(self) -> Record:
        """The MarketData record (contract 3.1) of the current state."""
        return {
            "symbol": self.symbol,
            "last_price": self.last,
            "bid_price": self.bid,
            "ask_price": self.ask,
            "volume_24h": self.volume,
            "high_24h": self.high,
            "low_24h": self.low,
            "updated_at": self.updated_at,
        }


def symbol_names(count: int, rng: random.Random) -> list[tuple[str, float]]:
    """The first `count` symbols with base prices: the real list, then synthetic ones."""
    names = list(BASE_PRICES[:count])
    for index in range(len(names), count):
        # Synthetic listings spread over 0.1 to 1000 USDT, like the long tail of an exchange.
        names.append((f"SYN{index:04d}USDT", float(f"{10 ** rng.uniform(-1, 3):.4g}")))
    return names


def new_instrument(symbol: str, base: float, now: str) -> Instrument:
    """A symbol at its base price, with a plausible opening 24 h range."""
    decimals = max(0, PRICE_DIGITS - 1 - math.floor(math.log10(base)))
    instrument = Instrument(symbol, base, decimals, base, base, base, base, base, 0.0, now)
    instrument.high = round(base * (1 + INITIAL_RANGE), decimals)
    instrument.low = round(base * (1 - INITIAL_RANGE), decimals)
    _quote(instrument)
    return instrument


def step(instrument: Instrument, rng: random.Random, now: str) -> None:
    """Move one symbol: a mean-reverting geometric random walk, then quotes and 24 h stats."""
    drift = -MEAN_REVERSION * math.log(instrument.last / instrument.base)
    move = math.exp(drift + rng.gauss(0.0, VOLATILITY_PER_TICK))
    instrument.last = instrument.round_price(instrument.last * move)
    _quote(instrument)
    instrument.high = max(instrument.high, instrument.last)
    instrument.low = min(instrument.low, instrument.last)
    traded = NOTIONAL_PER_TICK * rng.uniform(0.2, 1.8) / instrument.last
    instrument.volume = round(instrument.volume + traded, 4)
    instrument.updated_at = now


def _quote(instrument: Instrument) -> None:
    # Whole ticks either side of the last price, at least one, so bid < last < ask always.
    ticks = max(1, round(instrument.last * HALF_SPREAD / instrument.tick))
    # A price of one tick cannot have a bid below it; lift it so the bid stays positive.
    instrument.last = max(
        instrument.last, round((ticks + 1) * instrument.tick, instrument.decimals)
    )
    instrument.bid = round(instrument.last - ticks * instrument.tick, instrument.decimals)
    instrument.ask = round(instrument.last + ticks * instrument.tick, instrument.decimals)


def order_book(instrument: Instrument, rng: random.Random, depth: int = 5) -> Record:
    """A small order book around the current quotes (published on `orderbook:{SYMBOL}`)."""
    size = NOTIONAL_PER_TICK / instrument.last
    levels = range(depth)
    return {
        "symbol": instrument.symbol,
        "bids": [
            [round(instrument.bid - i * instrument.tick, instrument.decimals), _size(size, rng)]
            for i in levels
        ],
        "asks": [
            [round(instrument.ask + i * instrument.tick, instrument.decimals), _size(size, rng)]
            for i in levels
        ],
        "updated_at": instrument.updated_at,
    }


def _size(size: float, rng: random.Random) -> float:
    return float(f"{size * rng.uniform(0.1, 3.0):.6g}")


def trade(instrument: Instrument, rng: random.Random) -> Record:
    """One public trade at the current price (published on `trades:{SYMBOL}`)."""
    return {
        "symbol": instrument.symbol,
        "price": instrument.last,
        "quantity": _size(NOTIONAL_PER_TICK / instrument.last, rng),
        "side": rng.choice(("BUY", "SELL")),
        "time": instrument.updated_at,
    }
