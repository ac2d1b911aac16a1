"""Leader election between workers: a Redis lease (SET NX PX), renewed while the leader lives.

Only the holder broadcasts and logs history (every worker ingests). A standby waits out the
lease's remaining time (`expires_in`, at most one renewal period) and tries to take it then, so
after a leader's death (SIGKILL: no release) it leads within `lease_ms` plus a few
milliseconds; with the default 1.5 s, inside the 2 s of issue 14 and the 5 s of contract
section 8.

Fencing: `holds()` is true only while the lease is certainly ours — until `lease_ms` after the
moment the last successful acquire/renew was *sent*, less a margin for clock drift. The worker
checks it before every broadcast, and the shared-snapshot write and the history append check
ownership in Redis itself, in the same script as the write (`NotLeader` when it is not ours).
"""

from __future__ import annotations

import time
from typing import Final

import redis.asyncio as aioredis

# Redis counts a key's TTL from when it ran the command, which is after we sent it; we count
# from the send, so our view expires first. The margin covers clock-rate drift between hosts.
_DRIFT_MARGIN: Final = 0.05  # of the lease

_RENEW: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""


class NotLeader(Exception):
    """A fenced write found another worker's id in the leader key."""


class LeaderLease:
    """One worker's view of the lease stored at `key`."""

    def __init__(self, client: aioredis.Redis, *, key: str, owner: str, lease_ms: int) -> None:
        self._client = client
        self.key = key
        self.owner = owner
        self.lease_ms = lease_ms
        self._valid_until = 0.0
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)

    def holds(self) -> bool:
        """Whether the lease is certainly ours right now (checked before each broadcast)."""
        return time.monotonic() < self._valid_until

    async def acquire(self) -> bool:
        """Take the lease if nobody holds it; return whether we hold it now."""
        sent = time.monotonic()
        if await self._client.set(self.key, self.owner, nx=True, px=self.lease_ms):
            self._extend(sent)
            return True
        return await self.renew()  # we may hold it already (e.g. after a Redis blip)

    async def renew(self) -> bool:
        """Extend the lease if it is still ours; return whether it is."""
        sent = time.monotonic()
        if await self._renew(keys=[self.key], args=[self.owner, self.lease_ms]):
            self._extend(sent)
            return True
        self._valid_until = 0.0
        return False

    async def expires_in(self) -> float:
        """Seconds until the lease key expires (0: nobody holds it) as Redis counts them."""
        remaining = int(await self._client.pttl(self.key))
        if remaining == -2:  # no key
            return 0.0
        if remaining < 0:  # a key without expiry (set by hand): look again next period
            return float(self.lease_ms) / 1000
        return remaining / 1000

    async def release(self) -> None:
        """Give the lease up (clean shutdown), so a standby takes over at once."""
        self._valid_until = 0.0
        await self._release(keys=[self.key], args=[self.owner])

    def lose(self) -> None:
        """Forget the lease locally (Redis unreachable: we cannot prove we hold it)."""
        self._valid_until = 0.0

    def _extend(self, sent: float) -> None:
        self._valid_until = sent + self.lease_ms / 1000 * (1 - _DRIFT_MARGIN)
