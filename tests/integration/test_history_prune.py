"""`manage.py prune_history`: old days go whole (their partitions dropped), recent ones stay."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from history.models import MarketTick, MinuteCandle, OrderEvent
from history.partitions import partition_name, partitions_list
from history.stream_rows import StreamRow
from tests.history_rows import store, stream_row, tick_row

pytestmark = [pytest.mark.integration, pytest.mark.django_db]


def day_start(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def order(n: int, moment: datetime) -> StreamRow:
    record = {"id": f"o{n}", "symbol": "X", "side": "SELL", "quantity": 1.0, "status": "NEW"}
    return stream_row("orders", record, moment)


def test_prune_drops_the_days_wholly_older_than_the_retention() -> None:
    # given ticks on 25 days past the retention, on the day it ends inside (before and after
    # its cut-off), and recent ones; old and recent orders; their minute candles
    now = timezone.now()
    cutoff = now - timedelta(days=30)
    boundary = day_start(cutoff)  # the day that is partly expired
    old = [tick_row("X", boundary - timedelta(days=d, hours=1), 1.0) for d in range(25)]
    partly = [tick_row("X", boundary + timedelta(seconds=1), 2.0)]
    if cutoff - boundary > timedelta(minutes=2):  # a tick older than the cut-off on that day
        partly.append(tick_row("X", cutoff - timedelta(seconds=1), 3.0))
    recent = [tick_row("X", now - timedelta(days=d), 4.0) for d in range(3)]
    store([*old, *partly, *recent])
    store([order(n, now - timedelta(days=40)) for n in range(7)] + [order(9, now)])
    out = io.StringIO()
    # when pruned
    call_command("prune_history", days=30, batch_size=3, stdout=out)
    # then the old days are gone with their candles, the partly expired day is kept whole
    assert MarketTick.objects.count() == len(partly) + len(recent)
    assert OrderEvent.objects.count() == 1
    assert not MinuteCandle.objects.filter(bucket__lt=boundary).exists()
    assert MinuteCandle.objects.count() == len(partly) + len(recent)  # a minute each
    days = [day for _, day in partitions_list(MarketTick._meta.db_table)]
    assert min(days) == boundary.date()
    lines = out.getvalue().splitlines()
    assert "market_data: 25 day partitions dropped" in lines
    assert "orders: 1 day partitions dropped" in lines
    assert "positions: 0 day partitions dropped" in lines
    assert "candles_1m: 25 rows deleted" in lines
    assert lines[-1] == f"kept: the days from {boundary.date().isoformat()} (UTC) on"


def test_a_row_outside_the_partitions_gets_its_day_on_demand() -> None:
    moment = datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
    assert store([tick_row("X", moment, 1.0)]) == {"market_data": 1}
    names = [name for name, _ in partitions_list(MarketTick._meta.db_table)]
    assert partition_name(MarketTick._meta.db_table, moment.date()) in names
    assert MarketTick.objects.get().time == moment


def test_prune_defaults_to_the_retention_setting_and_refuses_bad_options() -> None:
    now = timezone.now()
    store([tick_row("X", now - timedelta(days=d), float(d)) for d in (10, 400)])
    call_command("prune_history", stdout=io.StringIO())  # history_retention_days: 30
    assert list(MarketTick.objects.values_list("last_price", flat=True)) == [10.0]
    with pytest.raises(CommandError):
        call_command("prune_history", days=0, stdout=io.StringIO())
    with pytest.raises(CommandError):
        call_command("prune_history", batch_size=0, stdout=io.StringIO())
