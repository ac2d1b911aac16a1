"""Logging that says a recurring problem at most once per interval per key, with a count."""

from __future__ import annotations

import logging
import time
from typing import Any


class ThrottledLog:
    """Log `key`'s message at most once per `interval_s`, counting what was held back."""

    def __init__(self, logger: logging.Logger, *, interval_s: float = 1.0) -> None:
        self._logger = logger
        self._interval_s = interval_s
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warning(self, key: str, message: str, **fields: Any) -> None:
        """Log a warning for `key` unless one was logged less than an interval ago."""
        now = time.monotonic()
        if now - self._last.get(key, -self._interval_s) < self._interval_s:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return
        self._last[key] = now
        suppressed = self._suppressed.pop(key, 0)
        self._logger.warning(message, extra={**fields, "key": key, "suppressed": suppressed})
