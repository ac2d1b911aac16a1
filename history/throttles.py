"""The history API's request throttle: per token (else user, else address), across processes.

DRF's `SimpleRateThrottle` keeps its counts in a Django cache; the default one is per process,
so the history throttle has a Redis cache of its own (the product's Redis, the deployment's key
prefix), and every web process counts against the same limit.
"""

from __future__ import annotations

import functools
from typing import Any

from django.conf import settings
from django.core.cache.backends.redis import RedisCache

# DRF ships no type information: Any to mypy.
from rest_framework.throttling import SimpleRateThrottle  # type: ignore[import-untyped]

from access.credentials import Credential


@functools.cache
def _cache(url: str, prefix: str) -> RedisCache:
    return RedisCache(url, {"KEY_PREFIX": f"{prefix}:throttle", "TIMEOUT": 120})


class HistoryRateThrottle(SimpleRateThrottle):  # type: ignore[misc]
    """`history_requests_per_minute` requests per credential and minute."""

    scope = "history"

    def __init__(self) -> None:
        self.cache = _cache(str(settings.CONFIG.redis_url), settings.CONFIG.redis_key_prefix)
        super().__init__()

    def get_rate(self) -> str:
        """The rate, from the product's settings (not DRF's DEFAULT_THROTTLE_RATES)."""
        return f"{settings.CONFIG.history_requests_per_minute}/min"

    def get_cache_key(self, request: Any, view: Any) -> str:
        """One count per token, else per logged-in user, else per client address."""
        credential = request.auth
        if isinstance(credential, Credential) and credential.kind == "token":
            ident = f"token:{credential.token_id or credential.name}"
        elif request.user is not None and request.user.is_authenticated:
            ident = f"user:{request.user.pk}"
        else:
            ident = f"address:{self.get_ident(request)}"
        return f"history:{ident}"
