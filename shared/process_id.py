"""The id a process goes by in Redis and in its log lines: host, pid and a random suffix."""

from __future__ import annotations

import os
import socket
import uuid


def process_id() -> str:
    """A fresh id, e.g. `web-1-4242-a1b2c3`: readable, and unique even when a pid is reused."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
