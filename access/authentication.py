"""REST authentication and permissions with API tokens (`Authorization: Bearer`) and sessions."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest

# DRF ships no type information (djangorestframework-stubs is not a dependency): Any to mypy.
from rest_framework.authentication import BaseAuthentication  # type: ignore[import-untyped]
from rest_framework.exceptions import (  # type: ignore[import-untyped]
    AuthenticationFailed,
    PermissionDenied,
    Throttled,
)
from rest_framework.permissions import BasePermission  # type: ignore[import-untyped]

from access.credentials import Credential, bearer_key, token_credential
from access.scopes import Scope


class TokenUser:
    """The request.user of a token-authenticated request (a token need not belong to a user)."""

    is_authenticated = True
    is_anonymous = False
    is_active = True
    pk = None
    id = None

    def __init__(self, credential: Credential) -> None:
        self.credential = credential
        self.is_staff = credential.staff
        self.username = f"token:{credential.name}"

    def get_username(self) -> str:
        """The name shown in logs and admin: the token's, never its key."""
        return self.username

    def __str__(self) -> str:
        return self.username


def client_address(request: HttpRequest) -> str:
    """The client's address as the server saw it (after a trusted proxy's X-Forwarded-For)."""
    return str(request.META.get("REMOTE_ADDR") or "unknown")


def request_credential(request: HttpRequest) -> Credential | None:
    """The bearer token's credential; None without one. Raises for a bad one (counted)."""
    raw_key = bearer_key(request.META.get("HTTP_AUTHORIZATION"))
    if raw_key is None:
        return None
    # Imported here: the URLconf imports this module in every process (system checks), and
    # the limits' metrics belong to web processes only (the worker exports its own).
    from access.gate import process_limits

    limits = process_limits(settings.CONFIG)
    address = client_address(request)
    if limits.auth_blocked(address):
        raise Throttled(detail="too many failed authentications; try again later")
    credential = token_credential(raw_key)
    if credential is None:
        limits.auth_failed(address, "http")
        raise AuthenticationFailed("invalid, expired or revoked token")
    return credential


class BearerTokenAuthentication(BaseAuthentication):  # type: ignore[misc]  # DRF is untyped
    """`Authorization: Bearer dsk_...` with an active token; 401 for a bad one."""

    def authenticate(self, request: Any) -> tuple[TokenUser, Credential] | None:
        """Called by DRF for each request before the view."""
        credential = request_credential(request._request)
        return None if credential is None else (TokenUser(credential), credential)

    def authenticate_header(self, request: Any) -> str:
        """The WWW-Authenticate header of a 401: makes DRF answer 401 rather than 403."""
        return 'Bearer realm="dashboard"'


class HasHistoryScope(BasePermission):  # type: ignore[misc]  # DRF is untyped
    """A logged-in user, or a token with the history scope."""

    message = "this token may not read history"

    def has_permission(self, request: Any, view: Any) -> bool:
        """Called by DRF before the view."""
        if not (request.user and request.user.is_authenticated):
            return False
        credential = request.auth
        return not isinstance(credential, Credential) or credential.history


def require_channel(request: Any, channel: str, symbol: str | None) -> None:
    """403 unless the request's token may read `channel` (for `symbol`; None: every symbol).

    A logged-in user reads every channel; a token only its scope, so a token narrowed to
    `market_data:BTCUSDT` must name that symbol.
    """
    credential = request.auth
    if not isinstance(credential, Credential):
        return
    if not credential.allows(channel, None if symbol is None else frozenset((symbol,))):
        raise PermissionDenied(_refusal_message(credential.channels, channel, symbol))


def request_scope(request: Any) -> Scope:
    """The channel scope of a DRF request: a token's, or everything for a session."""
    credential = request.auth
    return credential.channels if isinstance(credential, Credential) else None


def _refusal_message(scope: Scope, channel: str, symbol: str | None) -> str:
    allowed = None if scope is None else scope.get(channel, frozenset())
    if not allowed:
        return f"this token may not read {channel}"
    shown = ", ".join(sorted(allowed))
    if symbol is None:
        return f"this token may read {channel} only for {shown}; name one with symbol="
    return f"this token may read {channel} only for {shown}"
