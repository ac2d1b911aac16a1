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


def compose_changes(first: Mapping[str, Any], second: Mapping[str, Any]) -> dict[str, Any]:
    """One set of changes equal to applying `first`, then `second`.

    Each path of `second` replaces the same path and every path below it, wherever they are
    (the later value overwrites them: a path below it only ever changed what it replaces), and
    goes last; what is kept of `first` applies before it as it did. So for every state the two
    apply to in order, `apply_changes(s, compose_changes(a, b))` equals
    `apply_changes(apply_changes(s, a), b)` (property-tested in tests/unit/test_core_compose.py).
    The values are the inputs' own objects, not copies.
    """
    result = dict(first)
    below = _descendant_counts(result)  # prefix -> how many paths of `result` lie below it
    for path, value in second.items():
        stale = [path] if path in result else []
        if below.get(path):
            prefix = path + "."
            stale += [key for key in result if key.startswith(prefix)]
        for key in stale:
            del result[key]
            _count_prefixes(below, key, -1)
        result[path] = value  # last: after every path it may need, as in `second`
        _count_prefixes(below, path, 1)
    return result


def _descendant_counts(changes: Mapping[str, Any]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for path in changes:
        _count_prefixes(counts, path, 1)
    return counts


def _count_prefixes(counts: dict[str, int], path: str, delta: int) -> None:
    """Add `delta` to the count of every proper prefix of `path` (`a` and `a.b` of `a.b.c`)."""
    end = path.find(".")
    while end >= 0:
        prefix = path[:end]
        counts[prefix] = counts.get(prefix, 0) + delta
        end = path.find(".", end + 1)


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
