"""The WebSocket handshake's login session key, nothing more; realtime.routing puts it in the scope.

In place of channels' `SessionMiddlewareStack`, whose `InstanceSessionWrapper` wrapped the
server's `send` for every connection — every frame the hub wrote then went through two extra
coroutines (the session wrapper's save check and the cookie middleware), a third of the
web process's time under fan-out — and built a lazy session store per handshake. A WebSocket
never saves a session (channels saves only on `http.response.start`), so the server's `send`
is the consumer's, and the consumer's writer writes through it directly. `access.gate` looks the
key up (cached) after the per-address limits.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from django.http.cookie import parse_cookie

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def session_key(scope: Scope, cookie_name: str) -> str | None:
    """The value of the `cookie_name` cookie of the handshake, if it carries one."""
    key = None
    for name, value in scope.get("headers", ()):
        if name == b"cookie":
            key = parse_cookie(value.decode("latin-1")).get(cookie_name) or key
    return key
