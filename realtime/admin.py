"""Django admin: the connected clients of every web process (presence registry), with a kick."""

from __future__ import annotations

from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.views.decorators.http import require_POST

from realtime.models import ConnectedClient
from realtime.selectors import client_list


@admin.register(ConnectedClient)
class ConnectedClientAdmin(admin.ModelAdmin):  # type: ignore[type-arg]  # django-stubs generic
    """Lists clients from Redis (not the database); staff may kick one (close code 4000)."""

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Every staff user sees who is connected (the contract: staff)."""
        return bool(request.user.is_active and request.user.is_staff)

    def has_module_permission(self, request: HttpRequest) -> bool:
        """Shown on the admin index to staff."""
        return self.has_view_permission(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        """Clients come by connecting, not from admin."""
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Nothing to edit."""
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Kicking is its own action."""
        return False

    def get_urls(self) -> list[URLPattern]:
        """The list replaces the changelist; `kick/` takes a POST."""
        kick = self.admin_site.admin_view(require_POST(self.kick_view))
        return [
            path("kick/", kick, name="realtime_connectedclient_kick"),
            path("", self.admin_site.admin_view(self.changelist_view), name=self._list_name),
        ]

    @property
    def _list_name(self) -> str:
        return "realtime_connectedclient_changelist"

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        """Called for the list page: every client of every live web process."""
        if not self.has_view_permission(request):
            return HttpResponseRedirect(reverse("admin:index"))
        clients = async_to_sync(client_list)(config=settings.CONFIG)
        context = {
            **self.admin_site.each_context(request),
            "title": "Connected clients",
            "clients": clients,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/realtime/connected_clients.html", context)

    def kick_view(self, request: HttpRequest) -> HttpResponse:
        """Called for a kick: ask whichever process holds the client to close it with 4000."""
        client_id = request.POST.get("client_id", "")
        if not client_id or len(client_id) > 200:
            messages.error(request, "no client given")
        else:
            # Imported here: Django imports admin modules in every process (the worker too), and
            # the hub brings the web process's metrics, which no other process may export.
            from realtime.hub import kick_client

            async_to_sync(kick_client)(
                get_channel_layer(), prefix=settings.CONFIG.redis_key_prefix, client_id=client_id
            )
            messages.success(request, f"asked the web processes to close {client_id}")
        return HttpResponseRedirect(reverse(f"admin:{self._list_name}"))
