"""Writes and lookups of tokens and origins (HackSoft style: services write, selectors read)."""

from __future__ import annotations

import hmac
import secrets
from datetime import timedelta
from urllib.parse import urlsplit

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.utils import timezone

from access.models import KEY_PREFIX, VISIBLE_PREFIX_LENGTH, AllowedOrigin, ApiToken, hash_key


def token_issue(
    *,
    name: str,
    owner: User | None = None,
    channels: list[str] | None = None,
    staff: bool = False,
    history: bool = True,
    expires_days: int | None = None,
) -> tuple[ApiToken, str]:
    """Create a token; return it and its raw key, which is shown once and never stored."""
    channels = channels or []
    unknown = ApiToken.valid_channels(channels)
    if unknown:
        raise ValidationError(f"unknown channels: {', '.join(unknown)}")
    if expires_days is not None and expires_days < 1:
        raise ValidationError("expires_days must be at least 1")
    raw_key = KEY_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(
        name=name,
        owner=owner,
        prefix=raw_key[:VISIBLE_PREFIX_LENGTH],
        key_hash=hash_key(raw_key),
        channels=channels,
        is_staff_token=staff,
        can_read_history=history,
        expires_at=None if expires_days is None else timezone.now() + timedelta(days=expires_days),
    )
    token.full_clean()
    token.save()
    return token, raw_key


def token_revoke(*, name: str) -> ApiToken:
    """Revoke the named token (kept for the record, refused from now on)."""
    token = ApiToken.objects.get(name=name)
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
    return token


def token_authenticate(raw_key: str) -> ApiToken | None:
    """The active token whose key this is, or None. Never logs the key."""
    if not raw_key.startswith(KEY_PREFIX) or len(raw_key) > 128:
        return None
    digest = hash_key(raw_key)
    token = ApiToken.objects.filter(key_hash=digest).first()
    # The lookup is by an index on the hash; the comparison below is constant-time anyway.
    if token is None or not hmac.compare_digest(token.key_hash, digest):
        return None
    return token if token.is_active(timezone.now()) else None


def normalize_origin(text: str) -> str:
    """`scheme://host[:port]` in lower case; ValidationError for anything else."""
    parts = urlsplit(text.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationError(f"not an origin (scheme://host[:port]): {text!r}")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise ValidationError(f"an origin has no path, query, fragment or user: {text!r}")
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname.lower()}{port}"


def origin_allow(*, origin: str, note: str = "") -> AllowedOrigin:
    """Allow (or re-enable) a browser origin."""
    normalized = normalize_origin(origin)
    allowed, _ = AllowedOrigin.objects.update_or_create(
        origin=normalized, defaults={"enabled": True, "note": note}
    )
    return allowed
