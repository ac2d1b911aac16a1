"""Django admin: the connected clients of every web process (presence registry), with kicks and
a notice to every client."""

from __future__ import annotations

from typing import Any

from asgiref.sync import async_to_sync
from django.conf import settings
from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.views.decorators.http import require_POST

from realtime import notices, protocol
from realtime.kicks import Target, kick
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
        """The list replaces the changelist; `kick/` and `notice/` take a POST."""
        kick = self.admin_site.admin_view(require_POST(self.kick_view))
        notice = self.admin_site.admin_view(require_POST(self.notice_view))
        return [
            path("kick/", kick, name="realtime_connectedclient_kick"),
            path("notice/", notice, name="realtime_connectedclient_notice"),
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
            "notice_levels": protocol.NOTICE_LEVELS,
            "notice_max_chars": protocol.NOTICE_MAX_CHARS,
        }
        return TemplateResponse(request, "admin/realtime/connected_clients.html", context)

    def kick_view(self, request: HttpRequest) -> HttpResponse:
        """Called for a kick: close one client, or every client of a token or a user (4000)."""
        given = [(t, request.POST.get(f, "")) for t, f in _KICK_FIELDS if request.POST.get(f)]
        if len(given) != 1 or len(given[0][1]) > 200:
            messages.error(request, "give one client, token or user")
        else:
            target, value = given[0]
            ids = kick(target, value, by=request.user.get_username())
            if ids:
                messages.success(request, f"asked the web processes to close {', '.join(ids)}")
            else:
                messages.warning(request, f"no connected client of {target} {value}")
        return HttpResponseRedirect(reverse(f"admin:{self._list_name}"))

    def notice_view(self, request: HttpRequest) -> HttpResponse:
        """Called for a notice: show it to every connected client of every web process."""
        try:
            notice = protocol.parse_notice(request.POST.dict())
        except protocol.NoticeError as exc:
            messages.error(request, f"notice not sent: {exc}")
        else:
            notices.send(notice, by=request.user.get_username())
            messages.success(request, "notice sent to every connected client")
        return HttpResponseRedirect(reverse(f"admin:{self._list_name}"))


_KICK_FIELDS: tuple[tuple[Target, str], ...] = (
    ("client", "client_id"),
    ("token", "token"),
    ("user", "user"),
)
