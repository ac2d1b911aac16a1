"""The WebSocket side's ASGI application: `/ws`, straight to its consumer.

In place of channels' `URLRouter` under a session middleware: each of them copied the scope (a
dict of ~20 keys, held for the connection's life by its awaiting coroutine) and added a frame to
every connection's stack, for one route and one key. Here the session cookie's value goes into
the server's own scope, whose one reader is the connection's consumer, and the consumer is
awaited directly. A path other than `/ws` is refused at the handshake (403), as the absent route
of any server would be, instead of an exception logged with its traceback for every such
request.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

from access.asgi import Receive, Scope, Send, session_key
from realtime.consumers import DashboardConsumer

WS_PATH = "/ws"


def route_path(scope: Scope) -> str:
    """The request's path below the deployment's root path (ASGI `root_path`), as channels'
    router read it."""
    path: str = scope.get("path", "")
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    return "/" + path.lstrip("/")


class WebSocketApplication:
    """The `websocket` scope type's application."""

    def __init__(self) -> None:
        self.cookie_name: str = settings.SESSION_COOKIE_NAME

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        """Called by the server for each connection."""
        if route_path(scope) != WS_PATH:
            await refuse_unrouted(receive, send)
            return
        # The server's scope, not a copy: nothing above this application reads it (the ASGI
        # spec's reason to copy), and the consumer is its one reader from here on.
        scope["session_key"] = session_key(scope, self.cookie_name)
        await DashboardConsumer()(scope, receive, send)


async def refuse_unrouted(receive: Receive, send: Send) -> None:
    """Answer a handshake for a path with no route: a close before the accept (HTTP 403)."""
    message: dict[str, Any] = await receive()
    if message["type"] == "websocket.connect":
        await send({"type": "websocket.close", "code": 1008})
