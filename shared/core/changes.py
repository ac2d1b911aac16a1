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
