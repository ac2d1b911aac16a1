"""`manage.py prune_history`: old rows go in small batches, recent ones stay."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from history.models import MarketTick, MinuteCandle, OrderEvent

pytestmark = [pytest.mark.integration, pytest.mark.django_db]


def tick(n: int, age: timedelta) -> MarketTick:
    moment = timezone.now() - age
    return MarketTick(
        stream_ms=n, stream_seq=0, seq=n, received_at=moment, time=moment,
        record={"symbol": "X", "last_price": 1.0}, symbol="X", last_price=1.0,
    )  # fmt: skip


def order(n: int, age: timedelta) -> OrderEvent:
    moment = timezone.now() - age
    record = {"id": f"o{n}", "symbol": "X", "side": "SELL", "quantity": 1.0, "status": "NEW"}
    return OrderEvent(
        stream_ms=n, stream_seq=0, seq=n, received_at=moment, time=moment, record=record,
        order_id=f"o{n}", symbol="X", side="SELL", quantity=1.0, status="NEW",
    )  # fmt: skip


def candle(minutes_ago: int) -> MinuteCandle:
    bucket = (timezone.now() - timedelta(minutes=minutes_ago)).replace(second=0, microsecond=0)
    return MinuteCandle(
        symbol="X", bucket=bucket, open=1, open_time=bucket, open_id=1, high=1, low=1, close=1,
        close_time=bucket, close_id=1, ticks=1,
    )  # fmt: skip


def test_prune_deletes_what_is_older_than_the_retention_in_batches() -> None:
    # given 25 old and 4 recent ticks, 7 old and 2 recent orders, old and recent candles
    MarketTick.objects.bulk_create(
        [tick(n, timedelta(days=31 + n)) for n in range(25)]
        + [tick(100 + n, timedelta(days=29)) for n in range(4)]
    )
    OrderEvent.objects.bulk_create(
        [order(n, timedelta(days=40)) for n in range(7)]
        + [order(100 + n, timedelta(hours=1)) for n in range(2)]
    )
    MinuteCandle.objects.bulk_create([candle(31 * 1440 + m) for m in range(5)] + [candle(3)])
    out = io.StringIO()
    # when pruned with a batch of 3 rows (many statements)
    call_command("prune_history", days=30, batch_size=3, stdout=out)
    # then only recent rows are left, and the output says how many went per table
    assert MarketTick.objects.count() == 4
    assert OrderEvent.objects.count() == 2
    assert MinuteCandle.objects.count() == 1
    lines = out.getvalue().splitlines()
    assert "market_data: 25 rows deleted" in lines
    assert "orders: 7 rows deleted" in lines
    assert "positions: 0 rows deleted" in lines
    assert "candles_1m: 5 rows deleted" in lines
    assert lines[-1].startswith("total: 37 rows older than ")


def test_prune_defaults_to_the_retention_setting_and_refuses_bad_options() -> None:
    MarketTick.objects.bulk_create([tick(1, timedelta(days=10)), tick(2, timedelta(days=400))])
    call_command("prune_history", stdout=io.StringIO())  # history_retention_days: 30
    assert list(MarketTick.objects.values_list("seq", flat=True)) == [1]
    with pytest.raises(CommandError):
        call_command("prune_history", days=0, stdout=io.StringIO())
    with pytest.raises(CommandError):
        call_command("prune_history", batch_size=0, stdout=io.StringIO())
