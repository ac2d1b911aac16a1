"""When is a hub deaf? Pure: the hub feeds it what it sees; tests feed it a clock.

The hub's subscription can die without an error (seen when Redis cut it repeatedly while it was
reconnecting: connected, yet subscribed to nothing). The sign is the shared state moving on
while the hub hears nothing. The first version compared "no update for 3 s" with "the shared
seq is ahead" at one instant, which is also true for a moment after every quiet spell: the
worker writes the shared seq *before* it broadcasts, so a check landing between the two took
a healthy hub for a deaf one, dropped the update in flight and resynced every client. Now the
hub must stay behind, hearing nothing, for the whole grace period after it first saw the gap.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class DeafnessCheck:
    """Decides, once a second, whether the hub has missed updates for `grace_s`."""

    grace_s: float
    behind_since: float | None = None

    def observe(self, *, now: float, shared_seq: int, mirror_seq: int, last_event: float) -> bool:
        """Called by the hub's watchdog; True means: rebuild the subscription now."""
        if shared_seq <= mirror_seq:
            self.behind_since = None  # caught up (or nothing happened): silence is right
            return False
        if self.behind_since is None or last_event >= self.behind_since:
            self.behind_since = now  # just fell behind, or updates are arriving: wait and see
            return False
        if now - self.behind_since < self.grace_s:
            return False
        self.behind_since = None
        return True
