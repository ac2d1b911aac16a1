"""Who a request or socket is, from a token or a session, with cached lookups.

A token lookup is one indexed query on a cache miss; results (including "no such token") are
cached per process for `access_cache_s`, so a flood of attempts with one bad key costs one query
and no message ever costs one. Login sessions are cached the same way (by a hash of the
session key), so a reconnecting browser costs no query and no thread-pool hop either. Open
sockets are re-checked separately (`access.gate`), which is what bounds how long a revoked
token or an ended session keeps working.

A miss is looked up once however many handshakes ask at the same time: the clients of a stopped
web process reconnect to another one together, mostly with a few shared tokens, and a thread
hop each (2,000 in flight) queued them behind the database thread for seconds
(docs/BENCHMARKS.md, "Reconnect storm").
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal, TypeVar, cast

from cachetools import TTLCache
from channels.db import database_sync_to_async
from django.conf import settings
from django.utils import timezone

from access import scopes
from access.models import AllowedOrigin, ApiToken, hash_key, looks_like_key
from access.scopes import Scope
from access.services import token_authenticate
from realtime.protocol import Subscription

_LAST_USED_EVERY = timedelta(minutes=1)  # last_used_at is for admins, not an audit log
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Credential:
    """What a token or a logged-in user may do."""

    kind: Literal["token", "session"]
    name: str
    token_id: int | None = None
    channels: Scope = None  # channel -> symbols it may take (None: all); None: every channel
    history: bool = True
    staff: bool = False
    session_key: str | None = None  # the login session a browser came with (re-checked)

    def allows(self, channel: str, symbols: frozenset[str] | None = None) -> bool:
        """Whether this credential may take `channel` narrowed to `symbols` (None: all)."""
        return scopes.covers(self.channels, channel, symbols)

    def narrow(self, subscription: Subscription) -> Subscription:
        """What of `subscription` this credential may take."""
        return scopes.narrow(self.channels, subscription)

    def uncovered(self, subscription: Subscription) -> list[str]:
        """The channels of `subscription` this credential may not take (sorted)."""
        return scopes.uncovered(self.channels, subscription)


class _Cache:
    """A TTL cache safe to use from Django's sync threads and the event loop's executor."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: TTLCache[str, Credential | None] | None = None
        self._origins: TTLCache[str, frozenset[str]] | None = None
        self._sessions: TTLCache[str, Credential | None] | None = None

    def _ttl(self) -> float:
        return float(settings.CONFIG.access_cache_s)

    def tokens(self) -> TTLCache[str, Credential | None]:
        with self._lock:
            if self._tokens is None:
                self._tokens = TTLCache(maxsize=100_000, ttl=self._ttl())
            return self._tokens

    def sessions(self) -> TTLCache[str, Credential | None]:
        with self._lock:
            if self._sessions is None:
                self._sessions = TTLCache(maxsize=100_000, ttl=self._ttl())
            return self._sessions

    def origins(self) -> TTLCache[str, frozenset[str]]:
        with self._lock:
            if self._origins is None:
                self._origins = TTLCache(maxsize=1, ttl=self._ttl())
            return self._origins

    def clear(self) -> None:
        with self._lock:
            self._tokens = self._origins = self._sessions = None


CACHE = _Cache()
_LOCK = threading.Lock()
_MISS = object()


def _peek(cache: TTLCache[str, Any], key: str) -> Any:
    """The cached value, or `_MISS`."""
    with _LOCK:
        return cache.get(key, _MISS)


def _store(cache: TTLCache[str, T], key: str, value: T) -> T:
    with _LOCK:
        cache[key] = value
    return value


_FLIGHTS: dict[tuple[str, str], asyncio.Future[Any]] = {}


async def _once(key: tuple[str, str], load: Callable[[], Awaitable[T]]) -> T:
    """`load()`, shared by every caller that asks for `key` while it runs (this event loop's)."""
    flight = _FLIGHTS.get(key)
    if flight is None or flight.get_loop() is not asyncio.get_running_loop():
        flight = asyncio.ensure_future(load())
        _FLIGHTS[key] = flight

        def landed(done: asyncio.Future[Any]) -> None:
            if _FLIGHTS.get(key) is done:
                del _FLIGHTS[key]

        flight.add_done_callback(landed)
    # One caller giving up (its client went away) does not cancel the others' lookup.
    return cast(T, await asyncio.shield(flight))


def token_credential(raw_key: str) -> Credential | None:
    """The credential of an active token with this raw key, or None (cached). Sync."""
    if not looks_like_key(raw_key):
        return None
    cache, digest = CACHE.tokens(), hash_key(raw_key)
    found = _peek(cache, digest)
    return _store(cache, digest, _load_token(raw_key)) if found is _MISS else found


async def atoken_credential(raw_key: str) -> Credential | None:
    """`token_credential` from async code: the cache here, a miss in a database thread."""
    if not looks_like_key(raw_key):
        return None
    digest = hash_key(raw_key)
    found = _peek(CACHE.tokens(), digest)
    if found is _MISS:
        found = await _once(
            ("token", digest), lambda: database_sync_to_async(token_credential)(raw_key)
        )
    return cast(Credential | None, found)


def session_credential(session_key: str) -> Credential | None:
    """The credential of the login session with this key (an active user's), or None (cached).

    Sync. What channels' `get_user` checks: the session exists and is unexpired, its user is
    active and its auth hash matches the user's (a changed password ends it).
    """
    cache, digest = CACHE.sessions(), hash_key(session_key)
    found = _peek(cache, digest)
    return _store(cache, digest, _load_session(session_key)) if found is _MISS else found


async def asession_credential(session_key: str) -> Credential | None:
    """`session_credential` from async code: the cache here, a miss in a database thread."""
    digest = hash_key(session_key)
    found = _peek(CACHE.sessions(), digest)
    if found is _MISS:
        found = await _once(
            ("session", digest), lambda: database_sync_to_async(session_credential)(session_key)
        )
    return cast(Credential | None, found)


def allowed_origins() -> frozenset[str]:
    """The enabled AllowedOrigin entries (cached). Sync."""
    cache = CACHE.origins()
    found = _peek(cache, "all")
    return _store(cache, "all", enabled_origins()) if found is _MISS else found


async def aallowed_origins() -> frozenset[str]:
    """`allowed_origins` from async code: the cache here, a miss in a database thread."""
    found = _peek(CACHE.origins(), "all")
    if found is _MISS:
        found = await _once(("origins", "all"), database_sync_to_async(allowed_origins))
    return cast(frozenset[str], found)


def enabled_origins() -> frozenset[str]:
    """The enabled origins, uncached (the open-socket re-check)."""
    return frozenset(AllowedOrigin.objects.filter(enabled=True).values_list("origin", flat=True))


def live_session_keys(keys: Iterable[str]) -> set[str]:
    """Which of these login sessions still exist, unexpired, for an active user (uncached).

    One query for the sessions and one for their users, whatever their number. Assumes the
    database session engine (Django's default, which this project keeps).
    """
    from django.contrib.auth import SESSION_KEY, get_user_model
    from django.contrib.sessions.models import Session

    wanted = set(keys)
    if not wanted:
        return set()
    owners: dict[str, str] = {}
    for session in Session.objects.filter(session_key__in=wanted, expire_date__gt=timezone.now()):
        user_id = session.get_decoded().get(SESSION_KEY)
        if user_id is not None:
            owners[session.session_key] = str(user_id)
    active = {
        str(pk)
        for pk in get_user_model()
        .objects.filter(pk__in=set(owners.values()), is_active=True)
        .values_list("pk", flat=True)
    }
    return {key for key, user_id in owners.items() if user_id in active}


def active_token_channels(ids: Iterable[int]) -> dict[int, Scope]:
    """The scopes of those of these tokens still usable (None: every channel), uncached.

    For the open-socket re-check: a token missing from the answer was revoked, expired or
    its owner deactivated; one whose channels shrank may no longer cover what its sockets take.
    """
    wanted = set(ids)
    if not wanted:
        return {}
    rows = (
        ApiToken.objects.usable(timezone.now()).filter(id__in=wanted).values_list("id", "channels")
    )
    return {pk: scopes.parse_scope(channels) for pk, channels in rows}


def bearer_key(header: str | None) -> str | None:
    """The key of an `Authorization: Bearer <key>` header, or None."""
    if not header:
        return None
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return key.strip() or None


def _load_session(session_key: str) -> Credential | None:
    from importlib import import_module

    from django.contrib.auth import get_user
    from django.http import HttpRequest

    request = HttpRequest()
    request.session = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    user = get_user(request)
    if not (user.is_authenticated and user.is_active):
        return None
    return Credential(
        kind="session", name=user.get_username(), staff=user.is_staff, session_key=session_key
    )


def _load_token(raw_key: str) -> Credential | None:
    token = token_authenticate(raw_key)
    if token is None:
        return None
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > _LAST_USED_EVERY:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return Credential(
        kind="token",
        name=token.name,
        token_id=token.pk,
        channels=scopes.parse_scope(token.channels),
        history=token.can_read_history,
        staff=token.is_staff_token,
    )
