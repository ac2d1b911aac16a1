"""The WebSocket side's one piece of ASGI middleware: the login session's key, nothing more.

In place of channels' `SessionMiddlewareStack`, whose `InstanceSessionWrapper` wrapped the
server's `send` for every connection — every frame the hub wrote then went through two extra
coroutines (the session wrapper's save check and the cookie middleware), a third of the
web process's time under fan-out — and built a lazy session store per handshake. A WebSocket
never saves a session (channels saves only on `http.response.start`), so the server's `send`
passes through untouched, and the consumer's writer steps it directly. `access.gate` looks the
key up (cached) after the per-address limits.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from django.conf import settings
from django.http.cookie import parse_cookie

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


class SessionKeyMiddleware:
    """Put the session cookie's value (unverified; None without one) in the scope."""

    def __init__(self, inner: App) -> None:
        self.inner = inner
        self.cookie_name: str = settings.SESSION_COOKIE_NAME

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Called by the server for each connection."""
        return await self.inner(
            {**scope, "session_key": session_key(scope, self.cookie_name)}, receive, send
        )


def session_key(scope: Scope, cookie_name: str) -> str | None:
    """The value of the `cookie_name` cookie of the handshake, if it carries one."""
    key = None
    for name, value in scope.get("headers", ()):
        if name == b"cookie":
            key = parse_cookie(value.decode("latin-1")).get(cookie_name) or key
    return key
