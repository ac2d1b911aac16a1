"""HTTP routes of the web process."""

from django.contrib import admin
from django.urls import path

from dashboard_project import views

urlpatterns = [
    path("health", views.health, name="health"),
    path("admin/", admin.site.urls),
]
