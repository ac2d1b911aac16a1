"""PostgreSQL history: one append-only table per record kind of contract 3.1.

Every row is one accepted change read from the worker's history stream. Each table holds the
record's typed fields (contract 3.1 names, numbers as double precision, nullable where the
contract makes them optional), the whole record as JSONB (extra fields pass through), the state
`seq`, the stream's `received_at`, the record's own `updated_at`, and `time`: the instant the
API filters, sorts and buckets on (`updated_at` when the producer sent one, else `received_at`).

Two replay keys, each unique per table: `(stream_ms, stream_seq)`, the Redis stream entry id
(the recorder writing the same entry twice inserts it once), and `row_key`, chosen by the worker
when it logs the change (the worker appending the same rows twice — after a lost reply — inserts
them once; the two copies have different entry ids). `seq` alone cannot be the key, because
after a worker failover a new leader may reuse seqs the dead one had already logged. `row_key` is
NULL for rows logged before it existed.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import ClassVar, Final

from django.contrib.postgres.indexes import BrinIndex
from django.db import models
from django.db.models import Q

# Candle buckets are aligned to this instant (UTC midnight): 1d candles are UTC days.
CANDLE_ORIGIN: Final = datetime(2000, 1, 1, tzinfo=UTC)


class HistoryRow(models.Model):
    """Columns every history table shares."""

    id = models.BigAutoField(primary_key=True)
    stream_ms = models.BigIntegerField(help_text="Redis stream entry id, milliseconds part.")
    stream_seq = models.BigIntegerField(help_text="Redis stream entry id, sequence part.")
    seq = models.BigIntegerField(help_text="The state's seq after this change.")
    received_at = models.DateTimeField(help_text="When the worker accepted the change.")
    updated_at = models.DateTimeField(null=True, help_text="The record's own updated_at.")
    time = models.DateTimeField(help_text="updated_at if the record has one, else received_at.")
    record = models.JSONField(help_text="The record as accepted, extra fields included.")
    row_key = models.CharField(  # noqa: DJ001 -- NULL for rows logged before row keys: distinct
        max_length=64, null=True, help_text="The worker's key for this change (replay key)."
    )

    # The model field the API's `symbol` parameter filters on (None: the kind has no key).
    key_field: ClassVar[str | None] = None
    # Model fields whose record key differs from the field name (`id` is the table's own).
    record_keys: ClassVar[dict[str, str]] = {}

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return f"{type(self).__name__} {self.stream_ms}-{self.stream_seq}"

    @classmethod
    def typed_fields(cls) -> list[models.Field[object, object]]:
        """The columns copied out of the record, in table order."""
        shared = {field.name for field in HistoryRow._meta.get_fields()}
        return [field for field in cls._meta.concrete_fields if field.name not in shared]

    @classmethod
    def record_key(cls, field_name: str) -> str:
        """The record's JSON key that fills model field `field_name`."""
        return cls.record_keys.get(field_name, field_name)


def _indexes(table: str, key: str | None) -> tuple[models.Index, ...]:
    """The same index set for every table (see docs/HISTORY.md, "Indexes")."""
    indexes = [
        # Newest first, whatever the key: keyset pages over (time, id), and retention batches
        # ("the oldest 10,000 rows before the cut-off") walk it from the old end.
        models.Index(fields=["-time", "-id"], name=f"{table}_time_id"),
    ]
    if key is not None:
        # "One symbol, a time range, newest first": the API's main query and the candles' scan.
        indexes.append(models.Index(fields=[key, "-time", "-id"], name=f"{table}_key_time_id"))
    return tuple(indexes)


def _replay_keys(table: str) -> tuple[models.UniqueConstraint, ...]:
    return (
        models.UniqueConstraint(fields=["stream_ms", "stream_seq"], name=f"{table}_stream_id"),
        # Partial: rows logged before row keys have none, and adding the constraint to a
        # populated table then builds an index of only the rows that have one.
        models.UniqueConstraint(
            fields=["row_key"], condition=Q(row_key__isnull=False), name=f"{table}_row_key"
        ),
    )


class MarketTick(HistoryRow):
    """A market-data change (`market_data:{SYMBOL}`)."""

    symbol = models.CharField(max_length=64)
    last_price = models.FloatField()
    bid_price = models.FloatField(null=True)
    ask_price = models.FloatField(null=True)
    volume_24h = models.FloatField(null=True)
    high_24h = models.FloatField(null=True)
    low_24h = models.FloatField(null=True)

    key_field = "symbol"

    class Meta:
        constraints = _replay_keys("hist_tick")
        indexes = _indexes("hist_tick", "symbol")


class OrderEvent(HistoryRow):
    """An order change (`orders:*`): the order as it stood after the change."""

    order_id = models.CharField(max_length=64)
    symbol = models.CharField(max_length=64)
    side = models.CharField(max_length=4)
    order_type = models.TextField(null=True)  # noqa: DJ001 -- absent from the record is NULL, not ""
    price = models.FloatField(null=True)
    quantity = models.FloatField()
    filled = models.FloatField(null=True)
    status = models.TextField()
    created_at = models.DateTimeField(null=True)

    key_field = "symbol"
    record_keys: ClassVar[dict[str, str]] = {"order_id": "id", "order_type": "type"}

    class Meta:
        constraints = _replay_keys("hist_order")
        indexes = _indexes("hist_order", "symbol")


class PositionSnapshot(HistoryRow):
    """A position change (`positions:{SYMBOL}`); quantity 0 records the close."""

    symbol = models.CharField(max_length=64)
    side = models.TextField(null=True)  # noqa: DJ001 -- absent is NULL, as for every optional field
    quantity = models.FloatField()
    entry_price = models.FloatField(null=True)
    mark_price = models.FloatField(null=True)
    unrealized_pnl = models.FloatField(null=True)
    realized_pnl = models.FloatField(null=True)
    liquidation_price = models.FloatField(null=True)

    key_field = "symbol"

    class Meta:
        constraints = _replay_keys("hist_position")
        indexes = _indexes("hist_position", "symbol")


class AccountSnapshot(HistoryRow):
    """The account after a change (`account:*`); the account has no key."""

    total_balance = models.FloatField()
    available_balance = models.FloatField(null=True)
    margin_used = models.FloatField(null=True)
    unrealized_pnl = models.FloatField(null=True)
    realized_pnl = models.FloatField(null=True)
    balances = models.JSONField(null=True)

    class Meta:
        constraints = _replay_keys("hist_account")
        indexes = _indexes("hist_account", None)


class StrategySnapshot(HistoryRow):
    """A strategy change (`strategies:{ID}`)."""

    strategy_id = models.CharField(max_length=64)
    name = models.TextField(null=True)  # noqa: DJ001 -- absent is NULL, as for every optional field
    status = models.TextField()
    pnl = models.FloatField(null=True)
    trades = models.BigIntegerField(null=True)
    win_rate = models.FloatField(null=True)

    key_field = "strategy_id"
    record_keys: ClassVar[dict[str, str]] = {"strategy_id": "id"}

    class Meta:
        constraints = _replay_keys("hist_strategy")
        indexes = _indexes("hist_strategy", "strategy_id")


class MinuteCandle(models.Model):
    """One symbol's 1-minute OHLC of last_price, kept up to date as its ticks are written.

    Candles of any interval are read from these rows instead of the ticks, so a day of one
    symbol costs 1,440 rows whatever its tick rate. Each side of open/close keeps the (time,
    id) of the tick it came from, so batches merge in any order to the same candle.
    """

    id = models.BigAutoField(primary_key=True)
    symbol = models.CharField(max_length=64)
    bucket = models.DateTimeField(help_text="Start of the minute (UTC).")
    open = models.FloatField()
    open_time = models.DateTimeField()
    open_id = models.BigIntegerField(help_text="The MarketTick the open price came from.")
    high = models.FloatField()
    low = models.FloatField()
    close = models.FloatField()
    close_time = models.DateTimeField()
    close_id = models.BigIntegerField(help_text="The MarketTick the close price came from.")
    volume = models.FloatField(null=True, help_text="The closing tick's volume_24h.")
    ticks = models.BigIntegerField()

    class Meta:
        constraints = (
            models.UniqueConstraint(fields=["symbol", "bucket"], name="hist_candle_symbol_bucket"),
        )
        # Retention only. A btree on bucket alone misled the planner: bucket's physical
        # correlation made it prefer that index, filtering out the 19 other symbols' rows, over
        # (symbol, bucket) (bench: a symbol-day 18 ms instead of ~2 ms). A BRIN is never chosen
        # for that query, and is tiny: candles are written in bucket order.
        indexes = (BrinIndex(fields=["bucket"], name="hist_candle_bucket"),)

    def __str__(self) -> str:
        return f"{self.symbol} {self.bucket.isoformat()}"


# The stream's channel names (contract 3.1) and the API's `type` values, to their tables.
HISTORY_MODELS: Final[dict[str, type[HistoryRow]]] = {
    "market_data": MarketTick,
    "orders": OrderEvent,
    "positions": PositionSnapshot,
    "account": AccountSnapshot,
    "strategies": StrategySnapshot,
}
