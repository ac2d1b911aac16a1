"""HTTP routes of the web process."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

import dashboard_project.openapi  # noqa: F401  (registers the schema's bearer scheme)
from dashboard_project import views
from realtime.api import ClientsView, DebugView, StateView
from realtime.kicks import KickClientView, KickTokenView, KickUserView
from realtime.notices import NoticeView

urlpatterns = [
    path("health", views.health, name="health"),
    path("health/ready", views.health_ready, name="health-ready"),
    path("metrics", views.metrics, name="metrics"),
    path("debug", DebugView.as_view(), name="debug"),
    path("api/v1/state", StateView.as_view(), name="state"),
    path("api/v1/clients", ClientsView.as_view(), name="clients"),
    path("api/v1/clients/<str:value>/kick", KickClientView.as_view(), name="kick-client"),
    path("api/v1/tokens/<str:value>/kick", KickTokenView.as_view(), name="kick-token"),
    path("api/v1/users/<str:value>/kick", KickUserView.as_view(), name="kick-user"),
    path("api/v1/notice", NoticeView.as_view(), name="notice"),
    path("api/v1/", include("history.urls")),
    path("api/schema", SpectacularAPIView.as_view(permission_classes=[]), name="schema"),
    path("admin/", admin.site.urls),
    path("", include("web.urls")),
]
