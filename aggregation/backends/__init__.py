"""Adapters to the backend services of contract 3.2, behind one small interface (base.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aggregation.backends.base import Backend, BackendHealth, BackendUnavailable, CallPolicy
from aggregation.backends.grpc_clients import AccountServiceBackend, OrderServiceBackend
from aggregation.backends.strategy_http import StrategyServiceBackend

if TYPE_CHECKING:
    from shared.config import Settings

__all__ = [
    "AccountServiceBackend",
    "Backend",
    "BackendHealth",
    "BackendUnavailable",
    "CallPolicy",
    "OrderServiceBackend",
    "StrategyServiceBackend",
    "build_backends",
]


def build_backends(config: Settings) -> list[Backend]:
    """Build the three backends of contract 3.2 from the settings; the caller closes them."""
    return [
        OrderServiceBackend.from_settings(config),
        AccountServiceBackend.from_settings(config),
        StrategyServiceBackend.from_settings(config),
    ]
