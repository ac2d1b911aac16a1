"""HTTP routes of the web process."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

from dashboard_project import views

urlpatterns = [
    path("health", views.health, name="health"),
    path("api/v1/", include("history.urls")),
    path("api/schema", SpectacularAPIView.as_view(permission_classes=[]), name="schema"),
    path("admin/", admin.site.urls),
]
