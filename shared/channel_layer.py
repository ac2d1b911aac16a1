"""What the product uses of a Channels channel layer (channels itself ships no types).

The hub subscribes a channel to the update and control groups and receives from it; the worker
and the admin's kicks send to groups. channels-redis' `RedisPubSubChannelLayer` is the one in
use (dashboard_project/settings.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol


class ChannelLayer(Protocol):
    """The channel-layer calls the product makes."""

    async def new_channel(self, prefix: str = ...) -> str:
        """A fresh channel name for this process to receive on."""

    async def group_add(self, group: str, channel: str) -> None:
        """Subscribe `channel` to `group`."""

    async def group_discard(self, group: str, channel: str) -> None:
        """Unsubscribe `channel` from `group`."""

    async def group_send(self, group: str, message: Mapping[str, Any]) -> None:
        """Send `message` to every channel of `group` (at most once)."""

    async def receive(self, channel: str) -> Any:
        """The next message for `channel` (whatever was published on it)."""

    async def flush(self) -> None:
        """Drop every subscription and queue of this layer instance."""
