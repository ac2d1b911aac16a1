"""The hub's subscription to the channel layer, kept alive: one channel in every update group
and in the `control` group, a loop that receives from it, and a watchdog that rebuilds it.

Each decoded event goes to one callback (the hub's dispatch by name). A message that is not an
event of ours (anyone who can PUBLISH reaches the group channels) is dropped and counted, and
must not end the loop. If the hub hears nothing for `_DEAF_AFTER_S` while the shared snapshot's
seq moves on, the subscription is dead (seen when Redis cut it repeatedly mid-reconnect:
connected, yet subscribed to nothing): it is rebuilt, with a receive loop that listens to the
new one, and `on_rebuilt` is called (the hub reloads its mirror).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Final

import msgpack
import redis.asyncio as aioredis

from realtime.watchdog import DeafnessCheck
from shared.cadences import CADENCES
from shared.channel_layer import ChannelLayer
from shared.keys import RedisNames
from shared.supervision import TaskSupervisor

log = logging.getLogger(__name__)

CONTROL: Final = "control"  # the group every hub joins for admin messages (kicks, notices)
RECEIVE: Final = "receive"  # the name of the receive loop under the hub's TaskSupervisor
# Far above the 100 ms tui cadence (realtime/watchdog.py).
_DEAF_AFTER_S: Final = 3.0
_UNDECODABLE_LOG_EVERY_S: Final = 10.0  # a flood of foreign messages: one warning per 10 s


class UnknownEvent(ValueError):
    """A channel-layer message whose type is none of `HUB_EVENTS` (raised by the callback)."""


class GroupSubscription:
    """One channel in the update and control groups, its receive loop and its watchdog."""

    def __init__(
        self,
        layer: ChannelLayer,
        names: RedisNames,
        redis: aioredis.Redis,
        loops: TaskSupervisor,
        *,
        on_event: Callable[[dict[str, Any]], None],
        mirror_seq: Callable[[], int],
        on_rebuilt: Callable[[], None],
    ) -> None:
        self._layer = layer
        self._names = names
        self._redis = redis
        self._loops = loops
        self._on_event = on_event
        self._mirror_seq = mirror_seq
        self._on_rebuilt = on_rebuilt
        self.channel = ""
        self.resubscribes = 0
        self.undecodable = 0  # channel-layer messages that were not events of ours
        self._undecodable_logged = float("-inf")
        self.last_event = 0.0  # loop time of the last message heard

    async def join(self) -> None:
        """A new channel, added to every cadence's group and to the control group."""
        self.channel = await self._layer.new_channel("hub.")
        for cadence in CADENCES:
            await self._layer.group_add(self._names.group(cadence), self.channel)
        await self._layer.group_add(self._names.group(CONTROL), self.channel)

    async def leave(self) -> None:
        """Leave every group (the hub stops)."""
        for cadence in (*CADENCES, CONTROL):
            await self._layer.group_discard(self._names.group(cadence), self.channel)

    async def rebuild(self) -> None:
        """A new subscription, and a receive loop that listens to it.

        The layer's `flush()` replaces every channel's queue: a receive still pending on the old
        one would wait forever, and the hub would hear nothing but its own mirror reloads.
        """
        await self._layer.flush()  # the hub is the layer's only user in this process
        await self.join()
        await self._loops.restart(RECEIVE)

    async def receive_forever(self) -> None:
        """Hand every event heard to `on_event`; count what is not an event of ours."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                event = await self._layer.receive(self.channel)
            except (ValueError, msgpack.UnpackException):
                # Not a message of ours: dropped, counted. It must not end the loop, nor make a
                # restart read the backlog of such messages one crash at a time.
                self._undecodable(loop.time())
                continue
            if not isinstance(event, dict):
                self._undecodable(loop.time())
                continue
            self.last_event = loop.time()
            try:
                self._on_event(event)
            except UnknownEvent:  # a dict, but not an event of ours: as undecodable
                self._undecodable(loop.time())
            except Exception:  # one bad event must not stop the process's updates
                log.exception("hub could not handle an event", extra={"type": event.get("type")})

    async def watch_forever(self) -> None:
        """Rebuild the subscription if updates stopped arriving while the state moved on."""
        loop = asyncio.get_running_loop()
        deafness = DeafnessCheck(_DEAF_AFTER_S)
        while True:
            await asyncio.sleep(1.0)
            try:
                shared_seq = int(await self._redis.get(self._names.seq) or 0)
                if not deafness.observe(
                    now=loop.time(),
                    shared_seq=shared_seq,
                    mirror_seq=self._mirror_seq(),
                    last_event=self.last_event,
                ):
                    continue
                log.warning(
                    "hub heard no update while the state moved; resubscribing",
                    extra={"mirror_seq": self._mirror_seq(), "shared_seq": shared_seq},
                )
                self.resubscribes += 1
                await self.rebuild()
                self.last_event = loop.time()
                self._on_rebuilt()
            except Exception as exc:  # Redis away: try again next round
                log.warning("hub watchdog could not check", extra={"error": str(exc)})

    def _undecodable(self, now: float) -> None:
        self.undecodable += 1
        if now - self._undecodable_logged >= _UNDECODABLE_LOG_EVERY_S:
            self._undecodable_logged = now
            log.warning(
                "hub dropped undecodable channel-layer messages",
                extra={"undecodable_total": self.undecodable},
            )
