"""The history API's request throttle: per token, across processes.

Tokens are what scripts and quants use; a browser session is a trader on the dashboard, which
asks for a symbol's candles at each click (a reloaded page: a request per chart), so sessions are
not counted — an account is limited by the login and connection limits instead (SECURITY.md).

A DRF throttle (`BaseThrottle`) whose state is in Redis, so that every web process counts
against the same limit. One round trip a request: a Lua script keeps, per credential, the
"theoretical arrival time" of the generic cell rate algorithm (GCRA — a token bucket of
`history_requests_per_minute` tokens refilled evenly over a minute), on Redis' own clock.
DRF's `SimpleRateThrottle` took two round trips and a pickled list of timestamps (bench: +0.8
ms on a page's p50); a fixed window would let twice the rate through at its edges.
"""

from __future__ import annotations

import functools
import logging
import math
from typing import Any, Final

from django.conf import settings
from redis.exceptions import RedisError

# DRF ships no type information: Any to mypy.
from rest_framework.throttling import BaseThrottle  # type: ignore[import-untyped]

from access.credentials import Credential
from shared.redis_clients import RedisTarget, sync_client

log = logging.getLogger(__name__)
_WINDOW_MS: Final = 60_000
# KEYS[1]: the credential's key. ARGV: ms between requests at the rate, the burst in ms.
# Returns 0 (allowed) or the ms to wait.
_GCRA: Final = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local interval, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local tat = math.max(tonumber(redis.call('GET', KEYS[1]) or 0), now_ms)
if tat - now_ms > burst - interval then
  return tat - now_ms - (burst - interval)
end
redis.call('SET', KEYS[1], tat + interval, 'PX', math.ceil(tat + interval - now_ms))
return 0
"""


@functools.cache
def _script(target: RedisTarget) -> Any:
    client = sync_client(target, socket_timeout=2, socket_connect_timeout=2)
    return client.register_script(_GCRA)


class HistoryRateThrottle(BaseThrottle):  # type: ignore[misc]
    """`history_requests_per_minute` requests per credential and minute (bursts up to that)."""

    def __init__(self) -> None:
        self._wait_s: float | None = None

    def allow_request(self, request: Any, view: Any) -> bool:
        """Called by DRF before the view: take one request's worth from the bucket."""
        credential = request.auth
        if not (isinstance(credential, Credential) and credential.kind == "token"):
            return True  # a browser session (see the module docstring)
        config = settings.CONFIG
        interval = _WINDOW_MS / config.history_requests_per_minute
        token = credential.token_id or credential.name
        key = f"{config.redis_key_prefix}:throttle:history:token:{token}"
        try:
            script = _script(RedisTarget.from_settings(config))
            wait_ms = float(script(keys=[key], args=[interval, _WINDOW_MS]))
        except RedisError as exc:  # no Redis, no count: serve rather than fail every request
            log.warning("history throttle unavailable", extra={"error": str(exc)[:300]})
            return True
        self._wait_s = wait_ms / 1000 if wait_ms > 0 else None
        return self._wait_s is None

    def wait(self) -> float | None:
        """Seconds until a request would be allowed (DRF's Retry-After)."""
        return None if self._wait_s is None else math.ceil(self._wait_s)
