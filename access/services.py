"""Writes of tokens and origins, and a token's lookup by key (the cached lookups a connection
needs are in access/credentials.py)."""

from __future__ import annotations

import hmac
import secrets
from datetime import timedelta
from urllib.parse import urlsplit

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.utils import timezone

from access.models import (
    KEY_PREFIX,
    VISIBLE_PREFIX_LENGTH,
    AllowedOrigin,
    ApiToken,
    hash_key,
    looks_like_key,
)


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
    """The usable token whose key this is, or None. Never logs the key."""
    if not looks_like_key(raw_key):
        return None
    digest = hash_key(raw_key)
    token = ApiToken.objects.usable(timezone.now()).filter(key_hash=digest).first()
    # The lookup is by an index on the hash; the comparison below is constant-time anyway.
    if token is None or not hmac.compare_digest(token.key_hash, digest):
        return None
    return token


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


DEMO_TOKEN_NAME = "demo"  # noqa: S105  # a token's name, not a secret


def demo_access_ensure(*, username: str, password: str) -> tuple[bool, str]:
    """The local demo: a superuser (created once) and a fresh `demo` staff token.

    Returns whether the user was created and the token's raw key. The previous demo token is
    deleted, so that only the key printed last works.
    """
    from django.contrib.auth import get_user_model

    user_model = get_user_model()
    user = user_model.objects.filter(username=username).first()
    created = user is None
    if user is None:
        user = user_model.objects.create_superuser(username=username, password=password)
    else:  # the password file is the truth: it may have been deleted and made anew
        user.set_password(password)
        user.save(update_fields=["password"])
    ApiToken.objects.filter(name=DEMO_TOKEN_NAME).delete()
    _token, raw_key = token_issue(name=DEMO_TOKEN_NAME, owner=user, staff=True)
    return created, raw_key
