"""What a value inside a record may be: a key (symbol, id, field name), and encodable everywhere.

The rules `records.py` checks every accepted record against, each on its own: keys match
`KEY_PATTERN` as a whole string; numbers, strings and nesting must be encodable by every encoder
on a record's path. Pure; also used by the history API (symbols) and the protocol (subscriptions).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Final, Literal

# Symbols, ids and field names become dotted-path segments and URL path segments: no dots.
# `\A...\Z`, not `^...$`: `$` also matches before a trailing newline, so "BTCUSDT\n" would pass
# and become a look-alike of BTCUSDT. Anchored so that even a `.match()` elsewhere is exact.
KEY_CHARS: Final = r"[A-Za-z0-9_-]{1,64}"  # unanchored: for messages and OpenAPI patterns
KEY_PATTERN: Final = rf"\A{KEY_CHARS}\Z"
_KEY_RE: Final = re.compile(KEY_PATTERN)


def is_key(text: str) -> bool:
    """Whether `text` is a valid symbol, id or field name (KEY_PATTERN, the whole string)."""
    return _KEY_RE.fullmatch(text) is not None


# Every value a record carries, extra fields and nested ones included, must be encodable by every
# encoder on its path: orjson (JSON frames, the shared snapshot, the history stream), msgpack
# (MessagePack frames) and PostgreSQL (jsonb, and bigint columns such as `trades`). msgspec keeps
# any JSON integer, so without this one 2**64 in an extra field failed every broadcast (issue 13).
# Integers: signed 64-bit, the range all three share (orjson and msgpack also take up to 2**64-1,
# PostgreSQL's bigint does not).
INT_MIN: Final = -(2**63)
INT_MAX: Final = 2**63 - 1
# Nesting: the record itself is level 1. orjson refuses to encode past 255 levels and a frame
# wraps a record in at most 4 more; 32 is far more than any desk record needs.
MAX_DEPTH: Final = 32
Unencodable = Literal[
    "unrepresentable_number", "unrepresentable_string", "too_deep", "invalid_field"
]
UNENCODABLE_DETAILS: Final[dict[str, str]] = {
    "unrepresentable_number": f"integers must be within [{INT_MIN}, {INT_MAX}], floats finite",
    "unrepresentable_string": "strings must be valid Unicode without NUL (\\u0000)",
    "too_deep": f"records may nest at most {MAX_DEPTH} levels",
    "invalid_field": "values must be JSON values",
}


def unencodable(value: object, depth: int) -> Unencodable | None:
    """Why `value`, at nesting level `depth`, cannot be encoded on every path; None if it can."""
    if isinstance(value, str):
        return None if encodable_str(value) else "unrepresentable_string"
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return None if INT_MIN <= value <= INT_MAX else "unrepresentable_number"
    if isinstance(value, float):
        return None if math.isfinite(value) else "unrepresentable_number"
    if not isinstance(value, dict | list):
        return "invalid_field"  # a backend's decoder handed over something JSON has not
    if depth > MAX_DEPTH:
        return "too_deep"
    items: Iterable[object] = value
    if isinstance(value, dict):
        for key in value:
            if not isinstance(key, str):
                return "invalid_field"
            if not encodable_str(key):
                return "unrepresentable_string"
        items = value.values()
    for item in items:
        reason = unencodable(item, depth + 1)
        if reason is not None:
            return reason
    return None


def encodable_str(text: str) -> bool:
    """No NUL (jsonb and text refuse it) and no lone surrogate (UTF-8 cannot hold one)."""
    if "\x00" in text:
        return False
    if text.isascii():
        return True
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True
