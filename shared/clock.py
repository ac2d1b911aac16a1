"""The wall clock as the product writes it: RFC 3339 in UTC with milliseconds."""

from __future__ import annotations

from datetime import UTC, datetime


def rfc3339_now() -> str:
    """The current UTC time as RFC 3339 with milliseconds, e.g. 2026-11-23T12:00:00.250Z."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
