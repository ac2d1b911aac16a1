"""Routes of the history API, mounted under /api/v1/."""

from django.urls import URLPattern, path

from history.api import HistoryView

urlpatterns: list[URLPattern] = [
    path("history", HistoryView.as_view(), name="history"),
]
