"""The hub's resume rings, one per cadence, and its answer to a client's `since` (contract 4.1).

The rings (realtime/resume.py `ResumeRing`, pure) are fed by the hub with every `state.update`
it receives; a consumer connecting with `?since=&epoch=` asks `ResumeRings.answer` what it can
be given — the missed updates, or why not — and replays them (realtime/consumers.py
`DashboardConsumer._resume`). Answer, replay and registration with the hub run with no await
in between, so the client misses no update and gets none twice.
"""

from __future__ import annotations

from realtime import metrics
from realtime.mirror import ProcessMirror
from realtime.resume import Entry, Reason, Recovered, Refused, ResumeRing, merged
from shared.cadences import CADENCES
from shared.config import Settings
from shared.events import StateUpdate

MERGED_KEPT = 256  # merged replays kept; each is one update's size at most a snapshot's


class ResumeRings:
    """Each cadence's recent updates, and what a resuming client of a cadence can be given."""

    def __init__(self, config: Settings) -> None:
        self.rings = {
            cadence: ResumeRing(
                span_s=config.resume_span_s,
                max_entries=config.resume_max_entries,
                max_bytes=config.resume_max_bytes,
            )
            for cadence in CADENCES
        }
        # Replays merged into one entry, by (cadence, epoch, since, head): the clients of a
        # storm were current when their process went, so they resume from a few seqs only,
        # and each merge is made (decoded, composed, encoded) once for all of them.
        self._merged: dict[tuple[str, str, int, int], Entry] = {}

    def reset(self, epoch: str, seq: int) -> None:
        """Every ring starts at `seq` of `epoch` (what the process knows starts here)."""
        for ring in self.rings.values():
            ring.reset(epoch, seq)

    def follow_lineage(self, epoch: str, seq: int) -> None:
        """After a mirror reload: a ring of another lineage than the mirror's starts at `seq`.

        A new lineage heard of through another cadence (Redis holds the newest: the worker
        writes it before it sends) starts this cadence's ring there.
        """
        for ring in self.rings.values():
            if ring.epoch != epoch:
                ring.reset(epoch, seq)

    def add(self, event: StateUpdate, epoch: str, now: float) -> None:
        """Keep one update (its pre-encoded frames) in its cadence's ring."""
        ring = self.rings.get(event["cadence"])
        if ring is not None:
            entry = Entry(event["base_seq"], event["seq"], event["json"], event["msgpack"], now)
            ring.add(entry, epoch)

    def answer(
        self,
        cadence: str,
        since: int,
        epoch: str,
        *,
        mirror: ProcessMirror,
        reloading: bool,
        now: float,
    ) -> Recovered | Refused:
        """What a client of `cadence` at `since` of `epoch` can be given: a replay of several
        updates is one update, merged (so it never overflows a send buffer, however long the
        client was away). Counted by result."""
        ring = self.rings[cadence]
        if reloading:
            # The process itself missed updates and does not know yet where the state is (or
            # in which lineage): it vouches for nothing. The snapshot sent instead is followed
            # by a fresh one once the mirror has reloaded, as for any client.
            metrics.RESUMES.labels(cadence, Reason.UNKNOWN.value).inc()
            return Refused(Reason.UNKNOWN)
        # The mirror may be ahead of this cadence's ring (the other cadence's updates): a
        # client between the two is exact, and this cadence's next update applies to it.
        current = mirror.seq if mirror.epoch == ring.epoch else None
        answer = ring.resume(since, epoch, now=now, current_seq=current)
        if isinstance(answer, Recovered) and len(answer.entries) > 1:
            answer = answer._replace(entries=(self._merge(cadence, answer),))
        result = answer.reason.value if isinstance(answer, Refused) else "recovered"
        metrics.RESUMES.labels(cadence, result).inc()
        return answer

    def _merge(self, cadence: str, answer: Recovered) -> Entry:
        key = (cadence, answer.epoch, answer.since, answer.seq)
        entry = self._merged.get(key)
        if entry is None:
            if len(self._merged) >= MERGED_KEPT:
                self._merged.clear()  # older heads: nobody resumes to them any more
            entry = self._merged[key] = merged(answer.entries, answer.epoch)
        return entry
