"""Admission of WebSocket connections, the per-process limits, and the re-check of open sockets.

The order of the checks matters: the cheap per-address limits come first, so that a flood is
refused before it costs a database lookup (of a token or of a session: the ASGI stack only
parses the session cookie); a failed token counts against its address.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

from channels.db import database_sync_to_async
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import DatabaseError
from django.http.request import split_domain_port, validate_host

from access import metrics, scopes
from access.credentials import (
    Credential,
    aallowed_origins,
    active_token_channels,
    asession_credential,
    atoken_credential,
    bearer_key,
    enabled_origins,
    live_session_keys,
)
from access.ratelimit import ConnectionCounts, KeyedBuckets, KeyedWindows
from access.services import normalize_origin
from realtime.close_codes import (
    CLOSE_FORBIDDEN,
    CLOSE_TOO_MANY,
    CLOSE_TRY_AGAIN,
    CLOSE_UNAUTHORIZED,
)
from realtime.protocol import Subscription
from shared.config import Settings


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a connection or message is refused, as a close code and a reason for the client."""

    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class Admission:
    """An admitted connection: who it is, from where, and through which listed origin."""

    credential: Credential
    address: str
    listed_origin: str | None  # an AllowedOrigin it came through (re-checked), not its own host


class AccessLimits:
    """The per-process limits on addresses and tokens (one instance per web process)."""

    def __init__(self, config: Settings) -> None:
        self._lock = threading.Lock()  # the HTTP side calls from Django's worker threads
        self.connects = KeyedBuckets(
            rate=config.ws_connects_per_ip_per_s, burst=config.ws_connects_burst
        )
        self.failures = KeyedWindows(
            limit=config.auth_failures_per_ip, window=config.auth_failure_window_s
        )
        self.per_address = ConnectionCounts(config.ws_max_connections_per_ip)
        self.per_token = ConnectionCounts(config.ws_max_connections_per_token)

    def auth_blocked(self, address: str) -> bool:
        """Whether `address` used up its failed authentications for now."""
        with self._lock:
            blocked = self.failures.full(address, time.monotonic())
        if blocked:
            metrics.limit_hit("failed_auth")
        return blocked

    def auth_failed(self, address: str, entry: str) -> None:
        """Count one failed authentication from `address` at `entry` (ws or http)."""
        metrics.auth_failed(entry)
        with self._lock:
            self.failures.add(address, time.monotonic())

    def connect_allowed(self, address: str) -> bool:
        """Take one connection attempt from `address`'s bucket."""
        with self._lock:
            allowed = self.connects.take(address, time.monotonic())
        if not allowed:
            metrics.limit_hit("connect_rate")
        return allowed

    def open(self, admission: Admission) -> Refusal | None:
        """Count an admitted connection against its address and token, or refuse it."""
        token = _token_key(admission.credential)
        with self._lock:
            if not self.per_address.acquire(admission.address):
                metrics.limit_hit("connections_per_ip")
                return Refusal(CLOSE_TOO_MANY, "too many connections from this address")
            if token is not None and not self.per_token.acquire(token):
                self.per_address.release(admission.address)
                metrics.limit_hit("connections_per_token")
                return Refusal(CLOSE_TOO_MANY, "too many connections with this token")
        return None

    def close(self, admission: Admission) -> None:
        """An opened connection ended."""
        token = _token_key(admission.credential)
        with self._lock:
            self.per_address.release(admission.address)
            if token is not None:
                self.per_token.release(token)


# One entry per configuration object (a process has one; tests swap settings.CONFIG). The
# object is kept alongside, so that its id cannot be reused by another while the entry lives.
_limits: dict[int, tuple[Settings, AccessLimits]] = {}
_limits_lock = threading.Lock()


def process_limits(config: Settings) -> AccessLimits:
    """This process's limits for `config`, created on first use."""
    with _limits_lock:
        found = _limits.get(id(config))
        if found is None:
            found = _limits[id(config)] = (config, AccessLimits(config))
        return found[1]


async def admit(
    scope: dict[str, Any], query: Mapping[str, list[str]], limits: AccessLimits
) -> Admission | Refusal:
    """Decide whether a WebSocket handshake (`query`: its parsed query string) may proceed."""
    try:
        return await _admit(scope, query, limits)
    except DatabaseError:
        # PostgreSQL away: no one new is admitted (open sockets keep their updates); the client
        # retries with its backoff. Not 4401: its credential may well be good.
        return Refusal(CLOSE_TRY_AGAIN, "credentials cannot be checked now; retry shortly")


async def _admit(
    scope: dict[str, Any], query: Mapping[str, list[str]], limits: AccessLimits
) -> Admission | Refusal:
    address = client_address(scope)
    if limits.auth_blocked(address):
        return Refusal(CLOSE_TOO_MANY, "too many failed authentications; try again later")
    if not limits.connect_allowed(address):
        return Refusal(CLOSE_TOO_MANY, "too many connection attempts; slow down")
    hosts = [value.decode("latin-1") for name, value in scope.get("headers", ()) if name == b"host"]
    if len(hosts) != 1 or not host_allowed(hosts[0]):
        return Refusal(CLOSE_FORBIDDEN, "host not allowed")
    headers = _headers(scope)
    listed_origin: str | None = None
    origin = headers.get("origin")
    if origin is not None and not same_host(origin, hosts[0]):
        try:
            listed_origin = normalize_origin(origin)
        except ValidationError:
            listed_origin = None
        if listed_origin is None or listed_origin not in await aallowed_origins():
            return Refusal(CLOSE_FORBIDDEN, "origin not allowed")
    tokens = query.get("token")
    raw_key = bearer_key(headers.get("authorization")) or (tokens[-1] if tokens else None)
    if raw_key:
        credential = await atoken_credential(raw_key)
        if credential is None:
            limits.auth_failed(address, "ws")
            return Refusal(CLOSE_UNAUTHORIZED, "invalid, expired or revoked token")
        return Admission(credential, address, listed_origin)
    # The session is looked up only now, after the per-address limits: the ASGI stack only
    # reads the cookie's value (realtime.routing), it resolves no user.
    session_key = scope.get("session_key")
    if session_key:
        session_credential = await asession_credential(session_key)
        if session_credential is not None:
            return Admission(session_credential, address, listed_origin)
    return Refusal(CLOSE_UNAUTHORIZED, "a token (Authorization: Bearer or token=) or a login")


class Guarded(Protocol):
    """An open connection the re-check may close."""

    admission: Admission | None

    @property
    def subscription(self) -> Subscription:
        """The channels it takes, with the symbols of narrowed ones."""


GuardedT = TypeVar("GuardedT", bound=Guarded)


async def recheck(members: Sequence[GuardedT]) -> list[tuple[GuardedT, int]]:
    """The open connections whose token was revoked or expired (4401) or no longer covers their
    channels (4403), whose login session ended (log out, expiry, a deactivated user: 4401), or
    whose origin was disabled (4403)."""
    admitted = [m for m in members if m.admission is not None]
    token_ids = {
        m.admission.credential.token_id
        for m in admitted
        if m.admission is not None and m.admission.credential.token_id is not None
    }
    session_keys = {
        m.admission.credential.session_key
        for m in admitted
        if m.admission is not None and m.admission.credential.session_key is not None
    }
    listed = any(m.admission is not None and m.admission.listed_origin for m in admitted)
    active = await database_sync_to_async(active_token_channels)(token_ids) if token_ids else {}
    live = await database_sync_to_async(live_session_keys)(session_keys) if session_keys else set()
    enabled = await database_sync_to_async(enabled_origins)() if listed else frozenset()
    closing: list[tuple[GuardedT, int]] = []
    for member in admitted:
        admission = member.admission
        assert admission is not None
        token_id = admission.credential.token_id
        session_key = admission.credential.session_key
        token_gone = token_id is not None and token_id not in active
        session_gone = session_key is not None and session_key not in live
        scope_shrank = (
            token_id is not None
            and not token_gone
            and bool(scopes.uncovered(active[token_id], member.subscription))
        )
        origin_gone = admission.listed_origin is not None and admission.listed_origin not in enabled
        if token_gone or session_gone:
            closing.append((member, CLOSE_UNAUTHORIZED))
        elif scope_shrank or origin_gone:
            closing.append((member, CLOSE_FORBIDDEN))
    return closing


def channel_refusal(credential: Credential, subscription: Subscription) -> Refusal | None:
    """4403 if `credential` may not take all of `subscription` (its channels and symbols)."""
    forbidden = credential.uncovered(subscription)
    if not forbidden:
        return None
    return Refusal(CLOSE_FORBIDDEN, f"channel not permitted: {', '.join(forbidden)}")


def client_address(scope: dict[str, Any]) -> str:
    """The client's address (the proxy's X-Forwarded-For when the server trusts it)."""
    client = scope.get("client") or ("unknown", 0)
    return str(client[0])


def host_allowed(host: str) -> bool:
    """Whether a handshake's Host is one of ALLOWED_HOSTS, as Django checks an HTTP request's.

    Django validates the Host of HTTP requests only; without this, a page on a rebinding
    domain (evil.example resolving to this server) would pass the origin check as "its own
    host".
    """
    domain, _port = split_domain_port(host)
    allowed = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed:  # Django's own default under DEBUG
        allowed = [".localhost", "127.0.0.1", "[::1]"]
    return bool(domain) and validate_host(domain, allowed)


def same_host(origin: str, host: str) -> bool:
    """Whether a browser's Origin names the host it connected to (its own page)."""
    try:
        netloc = urlsplit(origin).netloc
    except ValueError:
        return False
    return bool(netloc) and netloc.lower() == host.lower()


def _headers(scope: dict[str, Any]) -> dict[str, str]:
    return {
        name.decode("latin-1").lower(): value.decode("latin-1")
        for name, value in scope.get("headers", ())
    }


def _token_key(credential: Credential) -> str | None:
    return None if credential.token_id is None else str(credential.token_id)
