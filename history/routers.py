"""Where history is read: the replica when one is configured (`database_replica_url`).

The history API's pages, candles and exports read `read_alias()`; everything else — the
recorder's writes (its own connection to `database_url`), migrations, and access checks (tokens,
sessions, users: other apps' models) — uses the primary. A replica lags its primary by its
replay delay: a page may miss rows written in the last moments, never show rows twice.
"""

from __future__ import annotations

from typing import Any, Final

from django.conf import settings

REPLICA: Final = "replica"


def read_alias() -> str:
    """The database alias history reads go to."""
    return REPLICA if REPLICA in settings.DATABASES else "default"


class HistoryReadRouter:
    """History models read from the replica; nothing is written or migrated there."""

    def db_for_read(self, model: type[Any], **hints: Any) -> str | None:
        """The replica for the history app's models; no opinion otherwise."""
        return read_alias() if model._meta.app_label == "history" else None

    def db_for_write(self, model: type[Any], **hints: Any) -> str:
        """Always the primary."""
        return "default"

    def allow_relation(self, obj1: Any, obj2: Any, **hints: Any) -> bool:
        """The replica holds the primary's data: relations across the two are fine."""
        return True

    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool:
        """Migrations run on the primary only (a replica is read-only)."""
        return db == "default"
