"""Applying an update's `changes` to the state: the diff rules of contract section 4.

A key is a dotted path; its value replaces the value at that path; `null` deletes that key; lists
are replaced whole; a new entity arrives as its whole object. The same rules as the server's
`shared/core/changes.py`, kept here so that this package needs nothing of the server's code
(`tests/unit/test_dashboard_client.py` checks that the two agree on random inputs).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class ChangeConflict(ValueError):
    """A path could not be applied: the state is not the one the update was made for."""


def apply_changes(state: dict[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """Apply `changes` to `state` in order and return it; raises ChangeConflict.

    The state and its channel containers are changed in place; records below them are never
    mutated but replaced by updated copies, so a shallow copy of each channel is a snapshot.
    """
    for path, value in changes.items():
        parts = path.split(".")
        if len(parts) == 1:
            _assign(state, parts[0], value)
            continue
        container = state.get(parts[0])
        if not isinstance(container, dict):
            raise ChangeConflict(f"{path}: no object at {parts[0]!r}")
        _assign_below(container, parts[1:], value, path)
    return state


def _assign_below(container: dict[str, Any], parts: list[str], value: Any, path: str) -> None:
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
