"""Routes of the web dashboard: the page, login and logout."""

from django.contrib.auth import views as auth_views
from django.urls import path

from access.login import login_throttled
from web import views

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path(
        "login",
        login_throttled(
            auth_views.LoginView.as_view(
                template_name="web/login.html", redirect_authenticated_user=True
            )
        ),
        name="login",
    ),
    path("logout", auth_views.LogoutView.as_view(), name="logout"),
]
