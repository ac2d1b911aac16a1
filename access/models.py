"""API tokens (stored only as a hash, with a visible prefix) and allowed browser origins."""

from __future__ import annotations

import hashlib
from datetime import datetime

from django.conf import settings
from django.db import models

from aggregation.core.records import Channel

KEY_PREFIX = "dsk_"  # raw keys look like dsk_<43 url-safe characters>; greppable in leaks
VISIBLE_PREFIX_LENGTH = 12  # what admin shows to tell tokens apart: "dsk_" + 8 characters


MAX_KEY_LENGTH = 128  # issued keys are 47 characters; longer input is refused before hashing


def looks_like_key(raw_key: str) -> bool:
    """Whether `raw_key` could be an issued key at all (cheap; no hashing, no lookup)."""
    return raw_key.startswith(KEY_PREFIX) and len(raw_key) <= MAX_KEY_LENGTH


def hash_key(raw_key: str) -> str:
    """The stored form of a raw key: SHA-256, hex (keys are random, so no salt is needed)."""
    return hashlib.sha256(raw_key.encode()).hexdigest()


class ApiToken(models.Model):
    """A credential for non-browser clients and the REST API."""

    name = models.CharField(max_length=100, unique=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    prefix = models.CharField(max_length=VISIBLE_PREFIX_LENGTH, editable=False)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    channels = models.JSONField(
        default=list,
        blank=True,
        help_text="Channels this token may subscribe to; empty means every channel.",
    )
    can_read_history = models.BooleanField(default=True)
    is_staff_token = models.BooleanField(
        default=False, help_text="May use the staff endpoints (/debug, /api/v1/clients)."
    )
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("name",)

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    def is_active(self, now: datetime) -> bool:
        """Neither revoked nor expired at `now`."""
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)

    def allows_channel(self, channel: str) -> bool:
        """Whether the token may subscribe to `channel` (a channel name, not narrowed)."""
        return not self.channels or channel in self.channels

    @staticmethod
    def valid_channels(names: list[str]) -> list[str]:
        """The names that are not channels (for validation messages)."""
        known = {c.value for c in Channel}
        return [name for name in names if name not in known]


class AllowedOrigin(models.Model):
    """A browser origin allowed to open the WebSocket, besides the server's own host."""

    origin = models.CharField(
        max_length=255, unique=True, help_text="scheme://host[:port], e.g. https://desk.example"
    )
    enabled = models.BooleanField(default=True)
    note = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("origin",)

    def __str__(self) -> str:
        return self.origin
