"""Metrics of access control and abuse limits (web processes only; labels are bounded sets)."""

from __future__ import annotations

from typing import Final, Literal, get_args

from prometheus_client import Counter

from shared.metric_children import Children

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
# Bound once (shared.metric_children); created now, so a scrape shows them before any traffic.
_LIMIT_HITS: Final[Children[Counter]] = Children(RATE_LIMIT_HITS)
_AUTH_FAILURES: Final[Children[Counter]] = Children(AUTH_FAILURES)
_REFUSED: Final[Children[Counter]] = Children(WS_REFUSED)
for _limit in get_args(Limit):
    _LIMIT_HITS[_limit]
for _entry in ("ws", "http", "login"):
    _AUTH_FAILURES[_entry]
for _code in (4401, 4403, 4429):
    _REFUSED[str(_code)]


def limit_hit(limit: Limit) -> None:
    """Count one refusal by `limit`."""
    _LIMIT_HITS[limit].inc()


def auth_failed(entry: str) -> None:
    """Count one invalid, expired or revoked credential presented at `entry`."""
    _AUTH_FAILURES[entry].inc()


def refused(code: int) -> None:
    """Count one WebSocket closed by access control with `code`."""
    _REFUSED[str(code)].inc()
