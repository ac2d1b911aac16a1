"""The two cadences clients choose between: the web dashboard's and the terminal UI's.

A cadence is both a client type (`?type=web|tui`) and a tick interval of the worker: each has
its own channel-layer group (`RedisNames.group`) and its own interval setting.
"""

from __future__ import annotations

from typing import Final

from shared.config import Settings

CADENCES: Final = ("web", "tui")


def interval_ms(settings: Settings, cadence: str) -> int:
    """The tick interval of `cadence` in milliseconds (`web_interval_ms`, `tui_interval_ms`)."""
    return settings.web_interval_ms if cadence == "web" else settings.tui_interval_ms
