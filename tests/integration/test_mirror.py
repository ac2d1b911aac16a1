"""The process mirror: bootstrapped from the shared snapshot, one encoding per seq and format."""

from __future__ import annotations

import orjson
import pytest
import redis.asyncio as aioredis

from aggregation.leader import LeaderLease
from aggregation.shared_snapshot import SharedSnapshot
from realtime.mirror import ProcessMirror
from realtime.protocol import EVERYTHING, Format
from shared.core.records import Accepted, Channel, validate_record
from shared.core.state import TradingState
from shared.keys import RedisNames

pytestmark = pytest.mark.integration


def md(symbol: str, price: float) -> Accepted:
    result = validate_record(Channel.MARKET_DATA, {"symbol": symbol, "last_price": price})
    assert isinstance(result, Accepted)
    return result


async def loaded_mirror(
    aredis: aioredis.Redis, key_prefix: str, *symbols: str
) -> tuple[TradingState, ProcessMirror]:
    """A leader's state holding `symbols`, written to the shared snapshot; a mirror loaded."""
    names = RedisNames(key_prefix.rstrip(":"))
    lease = LeaderLease(aredis, key=names.leader, owner="w1", lease_ms=5000)
    assert await lease.acquire()
    shared = SharedSnapshot(aredis, names)
    state = TradingState(cadences=("mirror", "web"), max_orders=10)
    for symbol in symbols:
        state.put(md(symbol, 1.0))
    await shared.write_changes(state, state.take_diff("mirror").changes, owner="w1")
    mirror = ProcessMirror(shared)
    await mirror.load()
    return state, mirror


async def test_a_burst_of_connections_costs_one_encoding_per_seq_and_format(
    aredis: aioredis.Redis, key_prefix: str
) -> None:
    # given a shared snapshot written by a leader
    state, mirror = await loaded_mirror(aredis, key_prefix, "BTCUSDT")
    assert (mirror.seq, mirror.data) == (state.seq, state.snapshot())
    assert mirror.epoch  # the writer's lineage, loaded with the seq
    # when 1,000 clients connect, half of them in MessagePack
    frames = [
        mirror.snapshot(EVERYTHING, Format.JSON if i % 2 else Format.MSGPACK) for i in range(1000)
    ]
    # then the snapshot was encoded once per format
    assert mirror.encodings == 2
    assert orjson.loads(frames[1])["data"] == state.snapshot()
    # and an update moves the mirror on, costing one new encoding per format again
    state.put(md("BTCUSDT", 2.0))
    update = state.take_diff("web")
    assert mirror.apply(update.base_seq, update.seq, update.changes, mirror.epoch) == "applied"
    for i in range(100):
        mirror.snapshot(EVERYTHING, Format.JSON if i % 2 else Format.MSGPACK)
    assert mirror.encodings == 4
    assert mirror.data == state.snapshot()


async def test_narrowed_snapshots_are_encoded_once_per_subscription_and_seq(
    aredis: aioredis.Redis, key_prefix: str
) -> None:
    # given a mirror holding two symbols
    state, mirror = await loaded_mirror(aredis, key_prefix, "BTCUSDT", "ETHUSDT")
    btc = {"market_data": frozenset({"BTCUSDT"})}
    # when 200 sockets of one narrowed view refresh over and over, and one of another view does
    frames = [mirror.snapshot(dict(btc), Format.JSON) for _ in range(1000)]
    other = mirror.snapshot({"market_data": None, "account": None}, Format.JSON)
    # then each view was encoded once at this seq, and each holds only what it takes
    assert mirror.encodings == 2
    assert set(orjson.loads(frames[-1])["data"]["market_data"]) == {"BTCUSDT"}
    assert set(orjson.loads(other)["data"]) == {"market_data", "account"}
    # and a new seq encodes again
    state.put(md("BTCUSDT", 2.0))
    update = state.take_diff("web")
    assert mirror.apply(update.base_seq, update.seq, update.changes, mirror.epoch) == "applied"
    fresh = mirror.snapshot(btc, Format.JSON)
    assert mirror.encodings == 3
    assert orjson.loads(fresh)["data"]["market_data"]["BTCUSDT"]["last_price"] == 2.0


async def test_mirror_refuses_updates_that_do_not_follow(
    aredis: aioredis.Redis, key_prefix: str
) -> None:
    mirror = ProcessMirror(SharedSnapshot(aredis, RedisNames(key_prefix.rstrip(":"))))
    await mirror.load()
    assert (mirror.seq, mirror.epoch) == (0, "")  # Redis holds nothing yet
    assert mirror.apply(5, 7, {"market_data.X": {"symbol": "X"}}, "") == "gap"
    assert mirror.apply(0, 3, {"market_data.X": {"symbol": "X"}}, "") == "applied"
    assert mirror.apply(0, 2, {"market_data.Y": {"symbol": "Y"}}, "") == "skip"
    assert mirror.apply(3, 4, {"market_data.Z.last_price": 1.0}, "") == "gap"  # conflict: no Z
    # an update of another lineage is a gap, whatever its seqs
    assert mirror.apply(3, 4, {"market_data.Y": {"symbol": "Y"}}, "other") == "gap"
    assert mirror.apply(0, 9, {"market_data.Y": {"symbol": "Y"}}, "other") == "gap"
    assert mirror.data["market_data"] == {"X": {"symbol": "X"}}


async def test_the_epoch_is_written_with_the_seq_and_a_new_lineage_is_loaded_at_any_seq(
    aredis: aioredis.Redis, key_prefix: str
) -> None:
    # given a mirror loaded at a leader's seq and epoch
    _state, mirror = await loaded_mirror(aredis, key_prefix, "BTCUSDT", "ETHUSDT")
    names = RedisNames(key_prefix.rstrip(":"))
    assert (await aredis.get(names.epoch)).decode() == mirror.epoch
    old_epoch, old_seq = mirror.epoch, mirror.seq
    # when Redis loses the snapshot: the mirror keeps what it has
    await aredis.delete(names.seq, names.epoch, *(names.state(c) for c in Channel))
    await mirror.load()
    assert (mirror.seq, mirror.epoch) == (old_seq, old_epoch)
    # when a worker starts a new lineage below the mirror's seq
    shared = SharedSnapshot(aredis, names)
    fresh = TradingState(cadences=("mirror",), max_orders=10)
    fresh.put(md("SOLUSDT", 1.0))
    await shared.write_full(fresh, owner="w1")
    assert fresh.seq < old_seq
    await mirror.load()
    # then the mirror takes it: seqs of two lineages do not compare
    assert (mirror.seq, mirror.epoch) == (fresh.seq, shared.epoch)
    assert mirror.epoch != old_epoch
    assert set(mirror.data["market_data"]) == {"SOLUSDT"}
