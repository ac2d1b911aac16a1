"""No tables: `ConnectedClient` only gives the presence registry a page in Django admin."""

from __future__ import annotations

from django.db import models


class ConnectedClient(models.Model):
    """A WebSocket client of some web process; listed from Redis presence, never stored."""

    class Meta:
        managed = False  # no table: realtime.admin reads the presence registry instead
        default_permissions = ("view",)
        verbose_name = "connected client"

    def __str__(self) -> str:
        return f"connected client {self.pk}"
