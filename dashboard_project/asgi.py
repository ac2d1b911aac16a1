"""ASGI entry point served by uvicorn or daphne: HTTP and the `/ws` WebSocket."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard_project.settings")

# Django must be set up before anything imports models (channels routing, consumers).
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter  # noqa: E402

from realtime.routing import WebSocketApplication  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        # The session (a logged-in browser) is one way to authenticate. The application only
        # reads the cookie's value into the scope; access.gate looks it up (cached, and checks
        # the origin and tokens) in the consumer, after the per-address limits and where the
        # close codes can be sent. Not channels' AuthMiddlewareStack (it queries the session
        # table for every handshake carrying a sessionid cookie before any limit could refuse
        # it), nor its SessionMiddlewareStack (it wraps the server's send, which every frame
        # then pays).
        "websocket": WebSocketApplication(),
    }
)
