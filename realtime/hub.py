"""The per-process hub: the only member of the update groups in each web process.

Consumers register with it and have no channel-layer channel of their own (design principle 7):
the hub receives each cadence's update once, applies it to the process mirror, and hands the
worker's pre-encoded frame to each registered consumer of that cadence, which writes it to its
socket. It keeps each cadence's recent updates in a resume ring (realtime/resume.py) for
clients that reconnect with `since` (contract 4.1). It also keeps this process's presence list
in Redis and carries out admin kicks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any, Final, Protocol

import msgpack
from channels.layers import get_channel_layer
from django.conf import settings

from access.gate import Admission
from realtime import metrics, notices, shutdown, status
from realtime.access_recheck import access_recheck
from realtime.close_codes import CLOSE_GOING_AWAY
from realtime.gc_policy import gc_policy
from realtime.mirror import ProcessMirror
from realtime.presence import ClientInfo, publish_presence_forever
from realtime.protocol import Format, Subscription, size_of
from realtime.resume import Entry, Reason, Recovered, Refused, ResumeRing
from realtime.stats import WebStats
from realtime.watchdog import DeafnessCheck
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

CONTROL: Final = "control"  # the group every hub joins for admin messages (kicks, notices)
# The watchdog (realtime/watchdog.py): if the shared snapshot's seq stays ahead while the hub
# hears nothing for this long, the hub's subscription is dead (seen when Redis cut it repeatedly
# mid-reconnect: connected, yet subscribed to nothing) and is rebuilt. Far above the 100 ms tui
# cadence.
_DEAF_AFTER_S: Final = 3.0
_UNDECODABLE_LOG_EVERY_S: Final = 10.0  # a flood of foreign messages: one warning per 10 s


class Member(Protocol):
    """What the hub needs of a connected consumer."""

    client_id: str
    cadence: str
    admission: Admission | None

    @property
    def subscription(self) -> Subscription:
        """The channels it takes, with the symbols of narrowed ones."""

    def deliver(self, event: StateUpdate, changes: dict[str, Any]) -> bool:
        """Called for every update of the member's cadence; must not block.

        Returns whether an update frame was written (the hub counts them once per event).
        """

    def catch_up(self) -> None:
        """Called after the mirror reloaded: resync if the mirror is ahead of the member."""

    def info(self) -> ClientInfo:
        """The member's presence entry."""

    async def kick(self) -> None:
        """Close the connection with code 4000 (an admin asked)."""

    def notify(self, frames: Mapping[Format, str | bytes]) -> bool:
        """Write a frame the hub encoded in each format (a notice, a status, a shutdown)."""

    async def close_with(self, code: int) -> None:
        """Close the connection with `code`."""


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
        self.rings = {
            cadence: ResumeRing(
                span_s=config.resume_span_s,
                max_entries=config.resume_max_entries,
                max_bytes=config.resume_max_bytes,
            )
            for cadence in CADENCES
        }
        self._members: dict[str, set[Member]] = {cadence: set() for cadence in CADENCES}
        self._by_id: dict[str, Member] = {}
        self.loops = TaskSupervisor("hub")  # its background loops, restarted if one dies
        self._reloading: asyncio.Task[None] | None = None
        self.channel = ""
        self.received = 0
        self.gaps = 0
        self.resubscribes = 0
        self.undecodable = 0  # channel-layer messages that were not events of ours
        self._undecodable_logged = float("-inf")
        self._last_event = 0.0
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
        await self._subscribe()
        await self.mirror.load()
        for ring in self.rings.values():  # what the process knows starts here
            ring.reset(self.mirror.epoch, self.mirror.seq)
        await self.status.read()  # so that the first clients get a reading, not "unknown"
        self._last_event = asyncio.get_running_loop().time()
        self.loops.start("receive", self._receive)
        self.loops.start("presence", self._presence)
        self.loops.start("watchdog", self._watchdog)
        self.loops.start("gc", gc_policy)
        self.loops.start("access", self._access_recheck)
        self.loops.start("stats", self._stats)
        self.loops.start("status", self._status)
        log.info("hub started", extra={"web_process": self.process_id, "seq": self.mirror.seq})

    async def stop(self) -> None:
        """Leave the groups and stop the hub's loops."""
        await self.loops.stop()
        with contextlib.suppress(Exception):
            for cadence in (*CADENCES, CONTROL):
                await self.layer.group_discard(self.names.group(cadence), self.channel)
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

    async def _subscribe(self) -> None:
        self.channel = await self.layer.new_channel("hub.")
        for cadence in CADENCES:
            await self.layer.group_add(self.names.group(cadence), self.channel)
        await self.layer.group_add(self.names.group(CONTROL), self.channel)

    async def _resubscribe(self) -> None:
        """A new subscription, and a receive loop that listens to it.

        The layer's `flush()` replaces every channel's queue: a receive still pending on the old
        one would wait forever, and the hub would hear nothing but its own mirror reloads.
        """
        await self.layer.flush()  # the hub is the layer's only user in this process
        await self._subscribe()
        await self.loops.restart("receive")

    async def _watchdog(self) -> None:
        """Rebuild the subscription if updates stopped arriving while the state moved on."""
        loop = asyncio.get_running_loop()
        deafness = DeafnessCheck(_DEAF_AFTER_S)
        while True:
            await asyncio.sleep(1.0)
            try:
                shared_seq = int(await self.redis.get(self.names.seq) or 0)
                if not deafness.observe(
                    now=loop.time(),
                    shared_seq=shared_seq,
                    mirror_seq=self.mirror.seq,
                    last_event=self._last_event,
                ):
                    continue
                log.warning(
                    "hub heard no update while the state moved; resubscribing",
                    extra={"mirror_seq": self.mirror.seq, "shared_seq": shared_seq},
                )
                self.resubscribes += 1
                await self._resubscribe()
                self._last_event = loop.time()
                self._reload()
            except Exception as exc:  # Redis away: try again next round
                log.warning("hub watchdog could not check", extra={"error": str(exc)})

    async def _receive(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                event = await self.layer.receive(self.channel)
            except (ValueError, msgpack.UnpackException):
                # Not a message of ours (anyone who can PUBLISH reaches the group channels):
                # dropped, counted. It must not end the loop, nor make a restart read the
                # backlog of such messages one crash at a time.
                self._undecodable(loop.time())
                continue
            if not isinstance(event, dict):
                self._undecodable(loop.time())
                continue
            self._last_event = loop.time()
            try:
                self._dispatch(event)
            except UnknownEvent:  # a dict, but not an event of ours: as undecodable
                self._undecodable(loop.time())
            except Exception:  # one bad event must not stop the process's updates
                log.exception("hub could not handle an event", extra={"type": event.get("type")})

    def _undecodable(self, now: float) -> None:
        self.undecodable += 1
        if now - self._undecodable_logged >= _UNDECODABLE_LOG_EVERY_S:
            self._undecodable_logged = now
            log.warning(
                "hub dropped undecodable channel-layer messages",
                extra={"undecodable_total": self.undecodable},
            )

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
        """Apply one update to the mirror, keep it for resumes, and hand it to every member of
        its cadence."""
        self.received += 1
        changes: dict[str, Any] = msgpack.unpackb(event["msgpack"])["changes"]
        epoch = event.get("epoch", "")  # "" from a worker older than epochs (a rolling upgrade)
        if self.mirror.apply(event["base_seq"], event["seq"], changes, epoch) == "gap":
            self.gaps += 1
            self._reload()
        cadence = event["cadence"]
        ring = self.rings.get(cadence)
        if ring is not None:
            loop_now = asyncio.get_running_loop().time()
            entry = Entry(
                event["base_seq"], event["seq"], event["json"], event["msgpack"], loop_now
            )
            ring.add(entry, epoch)
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

    def resume(
        self, cadence: str, since: int, epoch: str, *, max_entries: int
    ) -> Recovered | Refused:
        """What a client of `cadence` at `since` of `epoch` can be given (contract 4.1); a
        replay of more than `max_entries` updates (the client's send buffer) is too old.

        Synchronous, like the delivery of updates: a consumer that registers right after it,
        with no await in between, misses no update and gets none twice.
        """
        ring = self.rings[cadence]
        mirror = self.mirror
        if self.reloading:
            # The process itself missed updates and does not know yet where the state is (or
            # in which lineage): it vouches for nothing. The snapshot sent instead is followed
            # by a fresh one once the mirror has reloaded, as for any client.
            metrics.RESUMES.labels(cadence, Reason.UNKNOWN.value).inc()
            return Refused(Reason.UNKNOWN)
        # The mirror may be ahead of this cadence's ring (the other cadence's updates): a
        # client between the two is exact, and this cadence's next update applies to it.
        current = mirror.seq if mirror.epoch == ring.epoch else None
        answer = ring.resume(
            since, epoch, now=asyncio.get_running_loop().time(), current_seq=current
        )
        if isinstance(answer, Recovered) and len(answer.entries) > max_entries:
            # The replay would overflow the send buffer into a snapshot anyway.
            answer = Refused(Reason.TOO_OLD)
        result = answer.reason.value if isinstance(answer, Refused) else "recovered"
        metrics.RESUMES.labels(cadence, result).inc()
        return answer

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
            for ring in self.rings.values():
                if ring.epoch != self.mirror.epoch:
                    # A new lineage, heard of through another cadence (Redis holds the newest:
                    # the worker writes it before it sends): this cadence's ring starts there.
                    ring.reset(self.mirror.epoch, self.mirror.seq)
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
        for cadence, count in status.deliver(members, self.status_frames()).items():
            metrics.sent(cadence, "status", count)

    async def _status(self) -> None:
        await self.status.run(lambda: self._send_status(self._by_id.values()))


class UnknownEvent(ValueError):
    """A channel-layer message whose type is none of `HUB_EVENTS`."""


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
