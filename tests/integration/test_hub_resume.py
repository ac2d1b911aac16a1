"""The hub's resume answers against a real shared snapshot (contract 4.1): its rings start at
the mirror, follow a new lineage heard of through the other cadence, and vouch for nothing
while the mirror reloads."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator

import msgpack
import orjson
import pytest
import redis.asyncio as aioredis
from django.conf import settings

from aggregation.broadcast import update_event
from aggregation.leader import LeaderLease
from aggregation.shared_snapshot import SharedSnapshot, new_epoch
from realtime.hub import Hub
from realtime.resume import Reason, Recovered, Refused
from shared.channel_layer import ChannelLayer
from shared.core.changes import apply_changes
from shared.core.records import Accepted, Channel, validate_record
from shared.core.state import TradingState
from shared.keys import RedisNames

pytestmark = pytest.mark.integration


def md(symbol: str, price: float) -> Accepted:
    result = validate_record(Channel.MARKET_DATA, {"symbol": symbol, "last_price": price})
    assert isinstance(result, Accepted)
    return result


def resume(hub: Hub, cadence: str, since: int, epoch: str) -> Recovered | Refused:
    return hub.resume(cadence, since, epoch)


class Leader:
    """A worker's state writing the shared snapshot, and the events it would send."""

    def __init__(self, client: aioredis.Redis, names: RedisNames) -> None:
        self.state = TradingState(cadences=("mirror", "web", "tui"), max_orders=10)
        self.shared = SharedSnapshot(client, names)
        self.lease = LeaderLease(client, key=names.leader, owner="w1", lease_ms=60_000)

    async def tick(self, cadence: str, *records: Accepted) -> dict[str, object]:
        for record in records:
            self.state.put(record)
        await self.shared.write_changes(
            self.state, self.state.take_diff("mirror").changes, owner="w1"
        )
        return dict(update_event(cadence, self.state.take_diff(cadence), epoch=self.shared.epoch))


@pytest.fixture
async def hub_and_leader(
    aredis: aioredis.Redis, key_prefix: str
) -> AsyncIterator[tuple[Hub, Leader]]:
    config = settings.CONFIG.model_copy(update={"redis_key_prefix": key_prefix.rstrip(":")})
    names = RedisNames(config.redis_key_prefix)
    leader = Leader(aredis, names)
    assert await leader.lease.acquire()
    await leader.shared.write_full(leader.state, owner="w1")
    await leader.tick("web", md("BTCUSDT", 1.0))
    layer: ChannelLayer = None  # type: ignore[assignment]  # the hub is not subscribed here
    hub = Hub(config, layer)
    await hub.mirror.load()
    for ring in hub.resumes.rings.values():  # as Hub.start does
        ring.reset(hub.mirror.epoch, hub.mirror.seq)
    yield hub, leader
    if hub._reloading is not None:
        await hub._reloading
    await hub.redis.aclose()


async def test_rings_start_at_the_mirror_and_follow_each_cadence(
    hub_and_leader: tuple[Hub, Leader],
) -> None:
    # given a hub loaded at seq S of the leader's lineage
    hub, leader = hub_and_leader
    start, epoch = hub.mirror.seq, hub.mirror.epoch
    assert epoch == leader.shared.epoch
    # when web updates arrive, and a tui one moves the mirror further
    hub.state_update(await leader.tick("web", md("BTCUSDT", 2.0)))  # type: ignore[arg-type]
    hub.state_update(await leader.tick("web", md("ETHUSDT", 2.0)))  # type: ignore[arg-type]
    web_head = leader.state.seq
    hub.state_update(await leader.tick("tui", md("BTCUSDT", 3.0)))  # type: ignore[arg-type]
    # then a web client at S gets both web updates (as one), one at the tui seq nothing (it
    # is exact)
    answer = resume(hub, "web", start, epoch)
    assert isinstance(answer, Recovered)
    assert (answer.seq, len(answer.entries)) == (web_head, 1)
    assert (answer.entries[0].base_seq, answer.entries[0].seq) == (start, web_head)
    assert resume(hub, "web", hub.mirror.seq, epoch) == Recovered(
        hub.mirror.seq, hub.mirror.seq, epoch, ()
    )
    assert resume(hub, "web", hub.mirror.seq + 1, epoch) == Refused(Reason.UNKNOWN)
    assert resume(hub, "web", start - 1, epoch) == Refused(Reason.TOO_OLD)
    assert resume(hub, "tui", start, epoch) == Recovered(
        start, hub.mirror.seq, epoch, tuple(hub.resumes.rings["tui"].entries)
    )


async def test_a_new_lineage_heard_through_the_other_cadence_refuses_the_old_one(
    hub_and_leader: tuple[Hub, Leader],
) -> None:
    # given a hub at the leader's lineage
    hub, leader = hub_and_leader
    old_epoch, old_seq = hub.mirror.epoch, hub.mirror.seq
    # when the leader starts a new lineage (Redis lost the snapshot) and only a tui update of
    # it has arrived
    leader.shared.epoch = new_epoch()
    leader.state.load(leader.state.snapshot(), seq=leader.state.seq + 1)
    await leader.shared.write_full(leader.state, owner="w1")
    hub.state_update(await leader.tick("tui", md("BTCUSDT", 5.0)))  # type: ignore[arg-type]
    # then while the mirror reloads nobody is resumed
    assert hub.reloading
    assert resume(hub, "web", old_seq, old_epoch) == Refused(Reason.UNKNOWN)
    assert hub._reloading is not None
    await hub._reloading
    # and once it has, the web ring is in the new lineage too: the old one is refused
    assert hub.mirror.epoch == leader.shared.epoch != old_epoch
    assert resume(hub, "web", old_seq, old_epoch) == Refused(Reason.EPOCH_CHANGED)
    current = resume(hub, "web", hub.mirror.seq, hub.mirror.epoch)
    assert current == Recovered(hub.mirror.seq, hub.mirror.seq, hub.mirror.epoch, ())
    await asyncio.sleep(0)


async def test_a_replay_of_many_updates_is_one_merged_update_made_once(
    hub_and_leader: tuple[Hub, Leader],
) -> None:
    # given more web updates since a client's seq than its send buffer holds
    hub, leader = hub_and_leader
    start, epoch = hub.mirror.seq, hub.mirror.epoch
    before = leader.state.snapshot()
    symbols = ("BTCUSDT", "ETHUSDT")
    updates = settings.CONFIG.ws_send_buffer_messages + 5
    for i in range(updates):
        event = await leader.tick("web", md(symbols[i % 2], 10.0 + i))
        hub.state_update(event)  # type: ignore[arg-type]
    # when the client resumes
    answer = resume(hub, "web", start, epoch)
    # then it gets them all as one update, from its seq to the head, exact in both formats
    assert isinstance(answer, Recovered)
    assert (answer.since, answer.seq) == (start, leader.state.seq)
    (entry,) = answer.entries
    for frame in (orjson.loads(entry.json), msgpack.unpackb(entry.msgpack)):
        assert frame["type"] == "update"
        assert frame["base_seq"] <= start < frame["seq"] == leader.state.seq
        assert frame["epoch"] == epoch
        assert apply_changes(copy.deepcopy(before), frame["changes"]) == leader.state.snapshot()
    # and a second client at the same seq gets the same merge, not a new one
    again = resume(hub, "web", start, epoch)
    assert isinstance(again, Recovered)
    assert again.entries[0] is entry
