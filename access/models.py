"""API tokens (stored only as a hash, with a visible prefix) and allowed browser origins."""

from __future__ import annotations

import hashlib
from datetime import datetime

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q

from access.scopes import parse_scope

KEY_PREFIX = "dsk_"  # raw keys look like dsk_<43 url-safe characters>; greppable in leaks
VISIBLE_PREFIX_LENGTH = 12  # what admin shows to tell tokens apart: "dsk_" + 8 characters


MAX_KEY_LENGTH = 128  # issued keys are 47 characters; longer input is refused before hashing


def looks_like_key(raw_key: str) -> bool:
    """Whether `raw_key` could be an issued key at all (cheap; no hashing, no lookup)."""
    return raw_key.startswith(KEY_PREFIX) and len(raw_key) <= MAX_KEY_LENGTH


def hash_key(raw_key: str) -> str:
    """The stored form of a raw key: SHA-256, hex (keys are random, so no salt is needed)."""
    return hashlib.sha256(raw_key.encode()).hexdigest()


def validate_channel_scope(value: object) -> None:
    """A token's `channels`: a list of channels, each optionally narrowed (`market_data:BTC`)."""
    if not isinstance(value, list):
        raise ValidationError("channels must be a list")
    try:
        parse_scope(value)
    except ValueError as exc:
        raise ValidationError(str(exc)) from None


class ApiTokenQuerySet(models.QuerySet["ApiToken"]):
    """Lookups of tokens."""

    def usable(self, now: datetime) -> ApiTokenQuerySet:
        """Neither revoked nor expired, and owned by an active user or by no one (a service's)."""
        return (
            self.filter(revoked_at__isnull=True)
            .exclude(expires_at__lte=now)
            .filter(Q(owner__isnull=True) | Q(owner__is_active=True))
        )


class ApiToken(models.Model):
    """A credential for non-browser clients and the REST API."""

    name = models.CharField(max_length=100, unique=True)
    # A person's token lives only as long as they do: deactivating the owner disables it, and
    # deleting the owner deletes it (it must not live on as an unowned service token).
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE
    )
    prefix = models.CharField(max_length=VISIBLE_PREFIX_LENGTH, editable=False)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    channels = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_channel_scope],
        help_text=(
            'Channels this token may take, each optionally narrowed to a symbol: ["market_data:'
            'BTCUSDT", "account"]. Empty means every channel.'
        ),
    )
    can_read_history = models.BooleanField(default=True)
    is_staff_token = models.BooleanField(
        default=False, help_text="May use the staff endpoints (/debug, /api/v1/clients)."
    )
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    objects = ApiTokenQuerySet.as_manager()

    class Meta:
        ordering = ("name",)

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    def allows_channel(self, channel: str) -> bool:
        """Whether the token may take the whole of `channel` (a channel name, not narrowed)."""
        return not self.channels or channel in self.channels


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
