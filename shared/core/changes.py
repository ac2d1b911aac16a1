"""Applying an update's changes to a snapshot: the diff rules of contract section 4.

A key is a dotted path; its value replaces the value at that path; `null` deletes that key; lists
are replaced whole; a new entity arrives as its whole object. Clients do exactly this, and so do
the tests and each web process's mirror.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class ChangeConflict(ValueError):
    """A path could not be applied: the snapshot is not the state the update was made for."""


def apply_changes(snapshot: dict[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """Apply `changes` to `snapshot` in order and return it.

    The snapshot and its channel containers (depth 1) are changed in place; records (depth 2 and
    below) are never mutated but replaced by updated copies, so they may be shared with the
    state or other snapshots. Raises ChangeConflict when a path's parent is missing.
    """
    for path, value in changes.items():
        parts = path.split(".")
        if len(parts) == 1:
            _assign(snapshot, parts[0], value)
            continue
        container = snapshot.get(parts[0])
        if not isinstance(container, dict):
            raise ChangeConflict(f"{path}: no object at {parts[0]!r}")
        _assign_below(container, parts[1:], value, path)
    return snapshot


def _assign_below(container: dict[str, Any], parts: list[str], value: Any, path: str) -> None:
    """Assign at `parts` inside `container` (mutable), copying every record on the way down."""
    head = parts[0]
    if len(parts) == 1:
        _assign(container, head, value)
        return
    child = container.get(head)
    if not isinstance(child, dict):
        if value is None:
            return  # deleting below something absent: already deleted
        raise ChangeConflict(f"{path}: no object at {head!r}")
    copied = dict(child)
    _assign_below(copied, parts[1:], value, path)
    container[head] = copied


def _assign(container: dict[str, Any], key: str, value: Any) -> None:
    if value is None:
        container.pop(key, None)
    else:
        container[key] = value


def snapshot_diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The changes that bring snapshot `old` to snapshot `new` under `apply_changes`' rules.

    Entity by entity (a worker taking over: the shared snapshot another worker wrote, and its
    own state): inside a channel that is an object on both sides, every entity that differs
    becomes one path to its whole new value and every entity that is gone a path to `null`; any
    other channel that differs (the order list) is replaced whole. Values are compared strictly
    (`1`, `1.0` and `true` are different JSON), so `apply_changes(old, diff)` equals `new`.
    """
    changes: dict[str, Any] = {}
    for channel, after in new.items():
        before = old.get(channel, _NOTHING)
        if isinstance(before, dict) and isinstance(after, dict):
            for key, value in after.items():
                if not identical(before.get(key, _NOTHING), value):
                    changes[f"{channel}.{key}"] = value
            changes.update((f"{channel}.{key}", None) for key in before if key not in after)
        elif not identical(before, after):
            changes[channel] = after
    changes.update((channel, None) for channel in old if channel not in new)
    return changes


def identical(a: Any, b: Any) -> bool:
    """Whether two JSON values are the same on the wire (type-strict, at every depth)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(identical(v, b[k]) for k, v in a.items())
    if isinstance(a, list):
        return len(a) == len(b) and all(identical(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


_NOTHING: Any = object()  # absent: differs from every JSON value, null included


def merge_changes(first: Mapping[str, Any], second: Mapping[str, Any]) -> dict[str, Any] | None:
    """One set of changes equal to applying `first` and then `second`, or None if there is none.

    Conflation (realtime/fanout.py): two consecutive updates sent as one. Every path of `first`
    at or below a path of `second` is overwritten by it and dropped; the rest of `first` keeps its
    order and `second` follows, so `apply_changes(s, merge_changes(a, b))` equals
    `apply_changes(apply_changes(s, a), b)` for every snapshot `s` the two apply to. Dropping a
    path of `first` is exact unless an entry of `second` before the one that covers it lies
    below it (that entry relied on what `first` put there): then None, and the updates are sent
    as they are. The worker's updates never have that shape (an entity is whole or fields, never
    both, in one update), so None is for other callers' inputs.
    """
    order = {path: index for index, path in enumerate(second)}
    # For every proper prefix of a path of `second`: the index of its first path below it.
    first_below: dict[str, int] = {}
    for index, path in enumerate(second):
        prefix = path
        while (dot := prefix.rfind(".")) >= 0:
            prefix = prefix[:dot]
            first_below.setdefault(prefix, index)
    merged: dict[str, Any] = {}
    for path, value in first.items():
        cover = _covering(path, order)
        if cover is None:
            merged[path] = value
        elif first_below.get(path, cover) < cover:
            return None
    merged.update(second)
    return merged


def _covering(path: str, order: Mapping[str, int]) -> int | None:
    """The index of the first path of `order` that is `path` or one of its ancestors."""
    found = order.get(path)
    prefix = path
    while (dot := prefix.rfind(".")) >= 0:
        prefix = prefix[:dot]
        index = order.get(prefix)
        if index is not None and (found is None or index < found):
            found = index
    return found
