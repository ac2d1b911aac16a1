"""The per-process hub: the only member of the update groups in each web process.

Consumers register with it and have no channel-layer channel of their own (design principle 7):
the hub receives each cadence's update once, applies it to the process mirror, and hands the
worker's pre-encoded frame to each registered consumer of that cadence, which writes it to its
socket. It keeps each cadence's recent updates in a resume ring (realtime/resume.py) for
clients that reconnect with `since` (contract 4.1). It also keeps this process's presence list
in Redis and carries out admin kicks.

Here: the member registry, the event dispatch by name with its handlers (`state_update`,
`client_kick`, `client_notice`) and the mirror reload. Each other job is a module of its own:
the group subscription, its receive loop and watchdog (realtime/group_subscription.py), the
resume rings and answer (realtime/resume_answer.py), presence, the GC policy, the access
re-check, the status feed and the `web.stats` line, each looped under `loops`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

import msgpack
from channels.layers import get_channel_layer
from django.conf import settings

from realtime import metrics, notices, shutdown, status
from realtime.access_recheck import access_recheck
from realtime.close_codes import CLOSE_GOING_AWAY
from realtime.conflation import PendingUpdate
from realtime.gc_policy import gc_policy
from realtime.group_subscription import CONTROL, RECEIVE, GroupSubscription, UnknownEvent
from realtime.member import Member, write_each
from realtime.mirror import ProcessMirror
from realtime.presence import publish_presence_forever
from realtime.protocol import Format, size_of
from realtime.resume import Recovered, Refused
from realtime.resume_answer import ResumeRings
from realtime.stats import WebStats
from shared import redis_clients
from shared.cadences import CADENCES
from shared.channel_layer import ChannelLayer
from shared.config import Settings
from shared.events import HUB_EVENTS, ClientKick, ClientNotice, StateUpdate
from shared.keys import RedisNames
from shared.process_id import process_id
from shared.snapshot import SnapshotReader
from shared.supervision import TaskSupervisor

log = logging.getLogger(__name__)


class Hub:
    """Receives updates for this process and fans them out to its consumers."""

    def __init__(self, config: Settings, layer: ChannelLayer) -> None:
        self.config = config
        self.layer = layer
        self.names = RedisNames(config.redis_key_prefix, config.input_prefix)
        self.process_id = process_id()
        # Same trap as the channel layer's: no read timeout on a long-lived client.
        self.redis = redis_clients.async_client(
            config, socket_timeout=None, socket_connect_timeout=5
        )
        self.mirror = ProcessMirror(SnapshotReader(self.redis, self.names))
        self.resumes = ResumeRings(config)
        self._members: dict[str, set[Member]] = {cadence: set() for cadence in CADENCES}
        self._by_id: dict[str, Member] = {}
        self.loops = TaskSupervisor("hub")  # its background loops, restarted if one dies
        self._reloading: asyncio.Task[None] | None = None
        self.groups = GroupSubscription(
            layer,
            self.names,
            self.redis,
            self.loops,
            on_event=self._dispatch,
            mirror_seq=lambda: self.mirror.seq,
            on_rebuilt=self._reload,
        )
        self.received = 0
        self.gaps = 0
        # Each cadence's update not yet fanned out, and how many worker frames were merged into
        # another (realtime/conflation.py).
        self._pending: dict[str, PendingUpdate] = {}
        self.conflated = 0
        self.stats = WebStats(interval_s=config.stats_log_interval_s, process_id=self.process_id)
        self.status = status.StatusFeed(
            self.redis,
            key=self.names.heartbeat,
            max_age_s=config.ready_heartbeat_max_age_s,
            interval_s=config.ws_status_interval_s,
            wall_clock=time.time,
        )

    async def start(self) -> None:
        """Join the groups, load the mirror, and start receiving."""
        await self.groups.join()
        await self.mirror.load()
        self.resumes.reset(self.mirror.epoch, self.mirror.seq)  # what the process knows starts here
        await self.status.read()  # so that the first clients get a reading, not "unknown"
        self.groups.last_event = asyncio.get_running_loop().time()
        self.loops.start(RECEIVE, self.groups.receive_forever)
        self.loops.start("presence", self._presence)
        self.loops.start("watchdog", self.groups.watch_forever)
        self.loops.start("gc", gc_policy)
        self.loops.start("access", self._access_recheck)
        self.loops.start("stats", self._stats)
        self.loops.start("status", self._status)
        log.info("hub started", extra={"web_process": self.process_id, "seq": self.mirror.seq})

    async def stop(self) -> None:
        """Leave the groups and stop the hub's loops."""
        await self.loops.stop()
        with contextlib.suppress(Exception):
            await self.groups.leave()
        await self.redis.aclose()

    def register(self, member: Member) -> None:
        """Start delivering updates of the member's cadence to it."""
        self._members[member.cadence].add(member)
        self._by_id[member.client_id] = member
        self._send_status((member,))  # after its snapshot: the consumer registers after it

    def unregister(self, member: Member) -> None:
        """Stop delivering to the member (it disconnected)."""
        self._members[member.cadence].discard(member)
        self._by_id.pop(member.client_id, None)

    async def close_all(self, code: int) -> int:
        """Close every registered connection with `code` (shutdown); return how many."""
        members = tuple(self._by_id.values())
        if code == CLOSE_GOING_AWAY:  # contract 4.1: a shutdown frame before every 1001
            shutdown.announce(members, spread_ms=self.config.ws_shutdown_reconnect_spread_ms)
        await asyncio.gather(*(m.close_with(code) for m in members), return_exceptions=True)
        return len(members)

    @property
    def resubscribes(self) -> int:
        """Subscriptions the watchdog rebuilt (the `web.stats` line)."""
        return self.groups.resubscribes

    def _dispatch(self, event: dict[str, Any]) -> None:
        """Hand `event` to the handler its type names (`state.update` -> `state_update`)."""
        kind = event.get("type")
        if kind not in HUB_EVENTS:
            raise UnknownEvent(kind)
        getattr(self, str(kind).replace(".", "_"))(event)

    def client_kick(self, event: ClientKick) -> None:
        """Close the client `event` names if this process holds it."""
        member = self._by_id.get(str(event.get("client_id")))
        if member is not None:
            asyncio.get_running_loop().create_task(member.kick())

    def client_notice(self, event: ClientNotice) -> None:
        """Write a staff notice to every client of this process (checked again first)."""
        notices.deliver(self._by_id.values(), dict(event))

    def state_update(self, event: StateUpdate) -> None:
        """Apply one update to the mirror, keep it for resumes, and fan it out to every member of
        its cadence on the loop's next turn, merged with the cadence's next ones if they arrive
        before it (realtime/conflation.py: the process is behind)."""
        self.received += 1
        frame = msgpack.unpackb(event["msgpack"])
        changes: dict[str, Any] = frame["changes"]
        epoch = event.get("epoch", "")  # "" from a worker older than epochs (a rolling upgrade)
        if self.mirror.apply(event["base_seq"], event["seq"], changes, epoch) == "gap":
            self.gaps += 1
            self._reload()
        cadence = event["cadence"]
        self.resumes.add(event, epoch, asyncio.get_running_loop().time())
        pending = self._pending.get(cadence)
        if pending is not None:
            if pending.absorb(event, changes, frame.get("timestamp")):
                self.conflated += 1
                return
            self._fan_out(cadence)  # it does not continue the pending one: that goes out first
        self._pending[cadence] = PendingUpdate(event, changes, frame.get("timestamp"))
        asyncio.get_running_loop().call_soon(self._fan_out, cadence)

    def _fan_out(self, cadence: str) -> None:
        """Hand the cadence's pending update to every member of the cadence."""
        pending = self._pending.pop(cadence, None)
        if pending is None:
            return
        event, changes = pending.event(), pending.changes
        delivered = 0
        for member in tuple(self._members.get(cadence, ())):
            try:  # free unless it raises (3.11): one broken connection must not stop the rest
                delivered += member.deliver(event, changes)
            except Exception:
                log.exception("delivery to one client failed", extra={"client": member.client_id})
        metrics.sent(cadence, "update", delivered)
        metrics.broadcast(
            cadence,
            event["sent_at"],
            (
                (Format.JSON, size_of(event["json"])),
                (Format.MSGPACK, len(event["msgpack"])),
            ),
        )

    def resume(self, cadence: str, since: int, epoch: str) -> Recovered | Refused:
        """What a client of `cadence` at `since` of `epoch` can be given (contract 4.1): the
        missed updates as one, or why not.

        Synchronous, like the delivery of updates: a consumer that registers right after it,
        with no await in between, misses no update and gets none twice.
        """
        return self.resumes.answer(
            cadence,
            since,
            epoch,
            mirror=self.mirror,
            reloading=self.reloading,
            now=asyncio.get_running_loop().time(),
        )

    @property
    def reloading(self) -> bool:
        """Whether the mirror is reloading after a gap (members are caught up when it ends)."""
        return self._reloading is not None

    def _reload(self) -> None:
        if self._reloading is None:
            self._reloading = asyncio.get_running_loop().create_task(self._reload_mirror())

    async def _reload_mirror(self) -> None:
        """A gap in the hub's own stream: reload from Redis, then resync waiting clients."""
        try:
            await self.mirror.load()
            log.info("mirror reloaded after a gap", extra={"seq": self.mirror.seq})
            self.resumes.follow_lineage(self.mirror.epoch, self.mirror.seq)
        except Exception:
            log.exception("mirror reload failed; the next gap retries")
        finally:
            self._reloading = None
        for member in tuple(self._by_id.values()):
            member.catch_up()

    async def _presence(self) -> None:
        await publish_presence_forever(
            self.redis,
            prefix=self.names.prefix,
            process=self.process_id,
            clients=lambda: [member.info() for member in self._by_id.values()],
        )

    async def _access_recheck(self) -> None:
        await access_recheck(
            lambda: tuple(self._by_id.values()), every_s=self.config.access_recheck_s
        )

    async def _stats(self) -> None:
        """The web.stats line, when its interval has passed (checked once a second)."""
        while True:
            await asyncio.sleep(1.0)
            self.stats.tick(self)

    # --- the status frame (realtime/status.py) ---------------------------------------------

    def status_frames(self) -> Mapping[Format, str | bytes]:
        """The latest status frame in each format, at the mirror's seq (encoded once)."""
        return self.status.board.frames(seq=self.mirror.seq, epoch=self.mirror.epoch)

    def _send_status(self, members: Iterable[Member]) -> None:
        for cadence, count in write_each(members, self.status_frames(), what="status").items():
            metrics.sent(cadence, "status", count)

    async def _status(self) -> None:
        await self.status.run(lambda: self._send_status(self._by_id.values()))


_hubs: dict[asyncio.AbstractEventLoop, Hub] = {}
_starting: dict[asyncio.AbstractEventLoop, asyncio.Lock] = {}


def current_hub() -> Hub | None:
    """This event loop's hub if one was started, without starting one."""
    return _hubs.get(asyncio.get_running_loop())


async def get_hub() -> Hub:
    """This process's hub (one per event loop), started on first use."""
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is not None:
        return hub
    lock = _starting.setdefault(loop, asyncio.Lock())
    async with lock:
        hub = _hubs.get(loop)
        if hub is None:
            hub = Hub(settings.CONFIG, get_channel_layer())
            await hub.start()
            _hubs[loop] = hub
    return hub


async def kick_client(layer: ChannelLayer, *, prefix: str, client_id: str) -> None:
    """Ask whichever process holds `client_id` to close it with code 4000."""
    names = RedisNames(prefix)
    await layer.group_send(names.group(CONTROL), {"type": "client.kick", "client_id": client_id})
