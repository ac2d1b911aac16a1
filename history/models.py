"""PostgreSQL history: one append-only table per record kind of contract 3.1, partitioned by day.

Every row is one accepted change read from the worker's history stream. The tables are built for
size (docs/HISTORY.md, "Schema"): declarative range partitions of one UTC day on `time` (created
ahead by the recorder, and on demand for a row outside them; retention drops whole days), the
record's typed fields in typed columns and **only the rest** in `extra` (JSONB, NULL when the
typed columns reproduce the record exactly), symbols as `int4` ids into `history_symbol`, and no
surrogate id: a row is identified by the key its writer chose, `(writer_id, n)`.

The replay key: the worker's history log names each row `{writer}-{n}`: the input's dedupe key
`1-{63-bit hash of the record}`, which every worker derives alike (docs/HISTORY.md; before issue
14, 64 random bits of the log, then a counter). `writer` is stored as an `int4` id into
`history_writer`, `n` as is; the recorder inserts a key once (the worker appending rows twice
after a lost reply, the recorder writing an entry twice after a crash, and two recorders racing
all insert nothing new). Rows logged before row keys existed are keyed by their stream entry
id: writer id 0, `n = ms << 20 | seq`.

`time` is the record's `updated_at` if it has one, else `received_at`: the instant the API
filters, orders and buckets on. `updated_format` says how `updated_at` was spelled (an index
into UPDATED_FORMATS; 3: kept verbatim in `extra`; NULL: the record had none, and
`received_at` is `time`). `received_at` is stored as `received_us`, its offset from `time` in
microseconds (`int4`), or whole in `received_at` when the offset does not fit.

These tables are created by SQL migrations (Django has no partitioned tables): `managed = False`,
and the primary key below is the ORM's view of the replay key, not a constraint.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import ClassVar, Final

from django.db import models

# Candle buckets are aligned to this instant (UTC midnight): 1d candles are UTC days.
CANDLE_ORIGIN: Final = datetime(2000, 1, 1, tzinfo=UTC)
# The writer id of rows keyed by their stream entry id (logged before row keys existed).
LEGACY_WRITER: Final = 0
# n of such a row: the entry id's ms shifted past its seq (a Redis append of one Lua call gives
# its entries one ms and seqs 0, 1, ...; 2**20 of them in one ms is far past any batch).
LEGACY_SEQ_BITS: Final = 20
# The spellings of `updated_at` rebuilt from `time` (PostgreSQL to_char formats, UTC): RFC 3339
# with Z and 6, 3 or no fraction digits. Any other spelling is kept as written, in `extra`.
UPDATED_FORMATS: Final = (
    'YYYY-MM-DD"T"HH24:MI:SS.US"Z"',
    'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"',
    'YYYY-MM-DD"T"HH24:MI:SS"Z"',
)
UPDATED_VERBATIM: Final = len(UPDATED_FORMATS)


class Symbol(models.Model):
    """A symbol or strategy id, stored once; history rows carry its `int4` id."""

    id = models.AutoField(primary_key=True)
    name = models.CharField(max_length=64, unique=True)

    def __str__(self) -> str:
        return self.name


class Writer(models.Model):
    """A worker history log's 64-bit id (the first half of its row keys), stored once."""

    id = models.AutoField(primary_key=True)
    writer = models.BigIntegerField(unique=True, help_text="The row keys' writer part, signed.")

    def __str__(self) -> str:
        return f"{self.writer & (2**64 - 1):016x}"


class HistoryRow(models.Model):
    """Columns every history table shares."""

    pk = models.CompositePrimaryKey("writer_id", "n", "time")
    time = models.DateTimeField(help_text="updated_at if the record has one, else received_at.")
    writer_id = models.IntegerField(help_text="history_writer id of the row key (0: legacy).")
    n = models.BigIntegerField(help_text="The row key's counter part.")
    seq = models.BigIntegerField(help_text="The state's seq after this change.")
    received_us = models.IntegerField(null=True, help_text="received_at - time, microseconds.")
    received_at = models.DateTimeField(null=True, help_text="When received_us cannot hold it.")
    updated_format = models.SmallIntegerField(
        null=True, help_text="How updated_at was spelled (UPDATED_FORMATS); NULL: absent."
    )
    extra = models.JSONField(null=True, help_text="Record fields the typed columns do not hold.")

    # The model field the API's `symbol` parameter filters on (None: the kind has no key), and
    # the record's JSON key it comes from.
    key_field: ClassVar[str | None] = None
    key_record: ClassVar[str] = "symbol"
    # Model fields whose record key differs from the field name.
    record_keys: ClassVar[dict[str, str]] = {}

    class Meta:
        abstract = True
        managed = False

    def __str__(self) -> str:
        return f"{type(self).__name__} {self.writer_id}-{self.n}"

    @classmethod
    def typed_fields(cls) -> list[models.Field[object, object]]:
        """The columns copied out of the record (the key's id excluded), in model order."""
        shared = {field.name for field in HistoryRow._meta.get_fields()} | {"symbol_id", "pk"}
        return [field for field in cls._meta.concrete_fields if field.name not in shared]

    @classmethod
    def record_key(cls, field_name: str) -> str:
        """The record's JSON key that fills model field `field_name`."""
        return cls.record_keys.get(field_name, field_name)


class MarketTick(HistoryRow):
    """A market-data change (`market_data:{SYMBOL}`)."""

    symbol_id = models.IntegerField()
    last_price = models.FloatField()
    bid_price = models.FloatField(null=True)
    ask_price = models.FloatField(null=True)
    volume_24h = models.FloatField(null=True)
    high_24h = models.FloatField(null=True)
    low_24h = models.FloatField(null=True)

    key_field = "symbol_id"

    class Meta:
        managed = False
        db_table = "history_markettick"


class OrderEvent(HistoryRow):
    """An order change (`orders:*`): the order as it stood after the change."""

    symbol_id = models.IntegerField()
    order_id = models.CharField(max_length=64)
    side = models.CharField(max_length=4)
    order_type = models.TextField(null=True)  # noqa: DJ001 -- absent from the record is NULL, not ""
    price = models.FloatField(null=True)
    quantity = models.FloatField()
    filled = models.FloatField(null=True)
    status = models.TextField()
    created_at = models.DateTimeField(null=True)

    key_field = "symbol_id"
    record_keys: ClassVar[dict[str, str]] = {"order_id": "id", "order_type": "type"}

    class Meta:
        managed = False
        db_table = "history_orderevent"


class PositionSnapshot(HistoryRow):
    """A position change (`positions:{SYMBOL}`); quantity 0 records the close."""

    symbol_id = models.IntegerField()
    side = models.TextField(null=True)  # noqa: DJ001 -- absent is NULL, as for every optional field
    quantity = models.FloatField()
    entry_price = models.FloatField(null=True)
    mark_price = models.FloatField(null=True)
    unrealized_pnl = models.FloatField(null=True)
    realized_pnl = models.FloatField(null=True)
    liquidation_price = models.FloatField(null=True)

    key_field = "symbol_id"

    class Meta:
        managed = False
        db_table = "history_positionsnapshot"


class AccountSnapshot(HistoryRow):
    """The account after a change (`account:*`); the account has no key."""

    total_balance = models.FloatField()
    available_balance = models.FloatField(null=True)
    margin_used = models.FloatField(null=True)
    unrealized_pnl = models.FloatField(null=True)
    realized_pnl = models.FloatField(null=True)
    balances = models.JSONField(null=True)

    class Meta:
        managed = False
        db_table = "history_accountsnapshot"


class StrategySnapshot(HistoryRow):
    """A strategy change (`strategies:{ID}`)."""

    symbol_id = models.IntegerField(help_text="history_symbol id of the strategy id.")
    name = models.TextField(null=True)  # noqa: DJ001 -- absent is NULL, as for every optional field
    status = models.TextField()
    pnl = models.FloatField(null=True)
    trades = models.BigIntegerField(null=True)
    win_rate = models.FloatField(null=True)

    key_field = "symbol_id"
    key_record = "id"

    class Meta:
        managed = False
        db_table = "history_strategysnapshot"


class MinuteCandle(models.Model):
    """One symbol's 1-minute OHLC of last_price, kept up to date as its ticks are written.

    Candles of any interval are read from these rows instead of the ticks, so a day of one
    symbol costs 1,440 rows whatever its tick rate. Each side of open/close keeps the (time,
    writer_id, n) of the tick it came from, so batches merge in any order to the same candle.
    Primary key (symbol_id, bucket) (created by SQL, like the tick table).
    """

    pk = models.CompositePrimaryKey("symbol_id", "bucket")
    symbol_id = models.IntegerField()
    bucket = models.DateTimeField(help_text="Start of the minute (UTC).")
    open = models.FloatField()
    open_time = models.DateTimeField()
    open_writer = models.IntegerField()
    open_n = models.BigIntegerField(help_text="With open_writer: the tick the open came from.")
    high = models.FloatField()
    low = models.FloatField()
    close = models.FloatField()
    close_time = models.DateTimeField()
    close_writer = models.IntegerField()
    close_n = models.BigIntegerField(help_text="With close_writer: the tick the close came from.")
    volume = models.FloatField(null=True, help_text="The closing tick's volume_24h.")
    ticks = models.BigIntegerField()

    class Meta:
        managed = False
        db_table = "history_minutecandle"

    def __str__(self) -> str:
        return f"{self.symbol_id} {self.bucket.isoformat()}"


# The stream's channel names (contract 3.1) and the API's `type` values, to their tables.
HISTORY_MODELS: Final[dict[str, type[HistoryRow]]] = {
    "market_data": MarketTick,
    "orders": OrderEvent,
    "positions": PositionSnapshot,
    "account": AccountSnapshot,
    "strategies": StrategySnapshot,
}
