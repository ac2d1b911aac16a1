"""Metrics of access control and abuse limits (web processes only; labels are bounded sets)."""

from __future__ import annotations

from typing import Final, Literal, get_args

from prometheus_client import Counter

Limit = Literal[
    "messages",  # a client message over the per-connection rate (rate_limited error)
    "abuse",  # sustained message flood: socket closed with 4429
    "connections_per_ip",
    "connections_per_token",
    "connect_rate",
    "failed_auth",
]

RATE_LIMIT_HITS: Final = Counter(
    "dashboard_rate_limit_hits_total",
    "Requests, messages or connections refused by an abuse limit",
    ["limit"],
)
AUTH_FAILURES: Final = Counter(
    "dashboard_auth_failures_total",
    "Invalid, expired or revoked credentials presented",
    ["entry"],
)
WS_REFUSED: Final = Counter(
    "dashboard_ws_refused_total",
    "WebSocket connections closed by access control, by close code",
    ["code"],
)
for _limit in get_args(Limit):
    RATE_LIMIT_HITS.labels(_limit)
for _entry in ("ws", "http", "login"):
    AUTH_FAILURES.labels(_entry)
for _code in ("4401", "4403", "4429"):
    WS_REFUSED.labels(_code)


def limit_hit(limit: Limit) -> None:
    """Count one refusal by `limit`."""
    RATE_LIMIT_HITS.labels(limit).inc()
