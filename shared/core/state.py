"""The trading state, its sequence number and per-cadence dirty-path tracking.

Every record put (`put`) that changes something bumps `seq` and marks what it changed as dirty for
every cadence. `take_diff(cadence)` computes the diff: the changes since that cadence's previous
diff, in time proportional to what changed (design principle 1), and starts a new interval for
that cadence only (cadences never steal each other's changes).

Dirty tracking is per entity: `None` means the whole entity changed (created or removed), a set
names the fields that changed inside an entity that existed throughout the interval. Values are
read when the diff is taken, so an update sets each path to its value at the diff's `seq`;
applying it to any snapshot taken inside the interval therefore gives exactly the state at that
`seq`.

Records are never mutated once stored: a change replaces the record with a new one. Snapshots
can therefore share records with the state.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from shared.core.records import ALL_CHANNELS, Accepted, Channel, Record, instant

# Where an entity lives: (channel,) for the account and the order list, (channel, key) otherwise.
EntityKey = tuple[str, ...]
Changes = dict[str, Any]
Snapshot = dict[str, Any]

# Module constants: an enum member lookup costs more than a global on the per-record path.
_CH_ORDERS: Final = Channel.ORDERS
_CH_POSITIONS: Final = Channel.POSITIONS
_ORDERS: Final[EntityKey] = (Channel.ORDERS,)
_ACCOUNT: Final[EntityKey] = (Channel.ACCOUNT,)


@dataclass(frozen=True, slots=True)
class Update:
    """One cadence's changes: applying `changes` to state at `base_seq` gives state at `seq`."""

    base_seq: int
    seq: int
    changes: Changes


class TradingState:
    """Market data, orders, positions, account and strategies, with `seq` and dirty paths."""

    def __init__(self, *, cadences: Iterable[str], max_orders: int, seq: int = 0) -> None:
        self.seq = seq
        self.max_orders = max_orders
        self._tables: dict[str, dict[str, Record]] = {
            Channel.MARKET_DATA: {},
            Channel.POSITIONS: {},
            Channel.STRATEGIES: {},
        }
        self._orders: dict[str, Record] = {}  # by id, oldest first (insertion order)
        self._account: Record = {}
        self._dirty: dict[str, dict[EntityKey, set[str] | None]] = {c: {} for c in cadences}
        self._base_seq: dict[str, int] = dict.fromkeys(self._dirty, seq)

    @property
    def cadences(self) -> tuple[str, ...]:
        """The cadence names whose changes are tracked."""
        return tuple(self._dirty)

    # --- writes ------------------------------------------------------------------------------

    def put(self, accepted: Accepted) -> bool:
        """Put one validated record into the state; return whether it changed it (and bumped `seq`).

        Putting, not applying: to apply is to put an update's changes onto a snapshot
        (`shared/core/changes.py` `apply_changes`).
        """
        channel, key, record = accepted
        table = self._tables.get(channel)
        if table is None:  # the two unkeyed channels
            if channel is _CH_ORDERS:
                return self._put_order(record)
            return self._put_account(record)
        assert key is not None  # every keyed channel's records carry their key
        entity_key = (channel, key)
        old = table.get(key)
        if channel is _CH_POSITIONS and record["quantity"] == 0:
            if old is None:
                return False
            del table[key]
            self._changed(entity_key, None)
            return True
        if old is None:
            table[key] = record
            self._changed(entity_key, None)
            return True
        changed = _changed_fields(old, record)
        if not changed:
            return False
        table[key] = record
        self._changed(entity_key, changed)
        return True

    def is_stale(self, accepted: Accepted) -> bool:
        """Whether `accepted` is older than the stored record of its entity, by `updated_at`.

        A backend poll or a cache-key reload may carry a value older than one a producer has
        published since; it must not overwrite it. Only two timestamps can be compared: when
        either record lacks `updated_at`, nothing is stale and the later arrival wins, as it
        always did. Equal instants are not stale (a correction made at the same time applies).
        """
        stamp = accepted.record.get("updated_at")
        if stamp is None:
            return False
        channel, key, _ = accepted
        if channel is _CH_ORDERS:
            stored = self._orders.get(key or "")
        elif channel is Channel.ACCOUNT:
            stored = self._account
        else:
            stored = self._tables[channel].get(key or "")
        before = None if stored is None else stored.get("updated_at")
        if before is None or before == stamp:
            return False
        return instant(stamp) < instant(before)

    def load(self, snapshot: Mapping[str, Any], *, seq: int) -> None:
        """Replace the whole state with `snapshot` at `seq` (a standby taking over).

        Every cadence starts a fresh interval at `seq`: its next update has `base_seq == seq` and
        carries only what changes from now on, so a client that had seen `seq` carries on and one
        that had not sees a gap and resyncs.
        """
        self._tables[Channel.MARKET_DATA] = dict(snapshot.get(Channel.MARKET_DATA, {}))
        self._tables[Channel.POSITIONS] = dict(snapshot.get(Channel.POSITIONS, {}))
        self._tables[Channel.STRATEGIES] = dict(snapshot.get(Channel.STRATEGIES, {}))
        orders = snapshot.get(Channel.ORDERS, [])
        self._orders = {order["id"]: order for order in reversed(orders)}
        self._account = dict(snapshot.get(Channel.ACCOUNT, {}))
        self.seq = seq
        for cadence, dirty in self._dirty.items():
            dirty.clear()
            self._base_seq[cadence] = seq

    def rebase(self, seq: int, changes: Mapping[str, Any]) -> None:
        """Continue from another lineage's state at `seq`, which `changes` bring to this one.

        A hot standby taking over (aggregation/standby.py): clients and the shared snapshot hold
        the old leader's state at `seq`; this state has ingested the same input (and what came
        while nobody led). `changes` is `snapshot_diff(that snapshot, self.snapshot())`. Every
        cadence starts an interval at `seq` with the entities `changes` touches marked dirty, so
        its next update brings a client at `seq` to this state exactly; the state's seq moves
        past `seq` (and past its own) when there is anything to send.
        """
        if changes:
            self.seq = max(self.seq, seq) + 1
        else:
            self.seq = seq
        touched = [_entity_key(path) for path in changes]
        for cadence, dirty in self._dirty.items():
            dirty.clear()
            dirty.update(dict.fromkeys(touched))
            self._base_seq[cadence] = seq

    def entity(self, channel: str, key: str | None) -> Any:
        """The current value at `channel` (key None) or `channel.key`; None when absent."""
        if key is None:
            return self._channel_value(Channel(channel), copy=True)
        return self._tables[channel].get(key)

    def _put_account(self, record: Record) -> bool:
        changed = _changed_fields(self._account, record)
        if not changed:
            return False
        self._account = record
        self._changed(_ACCOUNT, changed)
        return True

    def _put_order(self, record: Record) -> bool:
        order_id = record["id"]
        if _same(self._orders.get(order_id), record):
            return False
        self._orders[order_id] = record  # an update keeps the order's place; a new one is newest
        while len(self._orders) > self.max_orders:
            del self._orders[next(iter(self._orders))]
        self._changed(_ORDERS, None)
        return True

    def _changed(self, entity_key: EntityKey, fields: set[str] | None) -> None:
        self.seq += 1
        for dirty in self._dirty.values():
            if fields is None:
                dirty[entity_key] = None
                continue
            marked = dirty.get(entity_key, _ABSENT)
            if marked is _ABSENT:
                dirty[entity_key] = set(fields)
            elif isinstance(marked, set):  # None: the whole entity is already marked
                marked.update(fields)

    # --- reads -------------------------------------------------------------------------------

    def take_diff(self, cadence: str) -> Update:
        """Compute `cadence`'s diff, the changes since its previous diff, and start its next
        interval (the marks of the other cadences stay)."""
        dirty = self._dirty[cadence]
        changes: Changes = {}
        for entity_key, fields in dirty.items():
            prefix = ".".join(entity_key)
            if fields is None:
                changes[prefix] = self._entity(entity_key)
                continue
            entity = self._entity(entity_key) or {}
            for name in fields:
                changes[f"{prefix}.{name}"] = entity.get(name)
        update = Update(base_seq=self._base_seq[cadence], seq=self.seq, changes=changes)
        dirty.clear()
        self._base_seq[cadence] = self.seq
        return update

    def snapshot(self, channels: Iterable[str] = ALL_CHANNELS) -> Snapshot:
        """Return the state of `channels` as plain JSON-ready containers (records shared)."""
        data: Snapshot = {}
        for name in channels:
            channel = Channel(name)
            data[channel.value] = self._channel_value(channel, copy=True)  # plain str keys
        return data

    def counts(self) -> dict[str, int]:
        """How many entities each channel holds (account: its number of fields)."""
        return {
            Channel.MARKET_DATA.value: len(self._tables[Channel.MARKET_DATA]),
            Channel.ORDERS.value: len(self._orders),
            Channel.POSITIONS.value: len(self._tables[Channel.POSITIONS]),
            Channel.ACCOUNT.value: len(self._account),
            Channel.STRATEGIES.value: len(self._tables[Channel.STRATEGIES]),
        }

    def _entity(self, entity_key: EntityKey) -> Any:
        return self.entity(entity_key[0], entity_key[1] if len(entity_key) > 1 else None)

    def _channel_value(self, channel: Channel, *, copy: bool) -> Any:
        if channel is Channel.ORDERS:
            return list(reversed(self._orders.values()))  # newest first
        if channel is Channel.ACCOUNT:
            return dict(self._account) if copy else self._account
        table = self._tables[channel]
        return dict(table) if copy else table


def _changed_fields(old: Record, new: Record) -> set[str]:
    """The fields whose value differs between two records of one entity (removed ones too)."""
    changed = set()
    added = 0
    get = old.get
    for name, value in new.items():
        before = get(name, _ABSENT)
        if before is _ABSENT:
            added += 1
            changed.add(name)
        # Inlined _same(): this loop runs for every field of every tick.
        elif type(before) is not type(value) or before != value:
            changed.add(name)
    if len(old) > len(new) - added:  # some field of `old` is not in `new`
        changed.update(name for name in old if name not in new)
    return changed


def _same(old: Any, new: Any) -> bool:
    # `True == 1` and `1 == 1.0` in Python, yet they are different JSON values on the wire.
    return type(old) is type(new) and old == new


class _Absent:
    """Marker for 'no value here', distinct from every JSON value including null."""

    __slots__ = ()


_ABSENT: Final = _Absent()


def _entity_key(path: str) -> EntityKey:
    """The entity a change path belongs to: `market_data.BTC.last_price` -> (market_data, BTC).

    The account and the order list are single entities; a path naming only a channel names
    that whole channel (what `_entity` then reads back whole).
    """
    parts = path.split(".", 2)
    if parts[0] in _SINGLE or len(parts) == 1:
        return (parts[0],)
    return parts[0], parts[1]


_SINGLE: Final = frozenset({Channel.ORDERS.value, Channel.ACCOUNT.value})
