"""What the session and CSRF cookies are, as a browser receives them (docs/SECURITY.md)."""

from __future__ import annotations

from http.cookies import Morsel

import pytest
from django.contrib.auth.models import User
from django.test import Client

from tests.unit.test_config import _manage

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

CSRF_COOKIE_AGE_S = 31_449_600  # Django's default: 52 weeks


def cookie(client: Client, name: str) -> Morsel[str]:
    return client.cookies[name]


def test_the_csrf_cookie_is_lax_and_readable_by_script_over_plain_http(client: Client) -> None:
    response = client.get("/login")
    assert response.status_code == 200
    csrf = cookie(client, "csrftoken")
    assert csrf["samesite"] == "Lax"
    assert csrf["path"] == "/"
    assert int(csrf["max-age"]) == CSRF_COOKIE_AGE_S
    assert not csrf["httponly"]  # Django's default: a script could read it (ours does not)
    assert not csrf["secure"]  # https is off in the test settings


def test_the_session_cookie_is_httponly_and_lax(
    client: Client, django_user_model: type[User]
) -> None:
    django_user_model.objects.create_user("trader", "", "right-password-1")
    client.get("/login")
    response = client.post("/login", {"username": "trader", "password": "right-password-1"})
    assert response.status_code == 302
    session = cookie(client, "sessionid")
    assert session["httponly"]
    assert session["samesite"] == "Lax"
    assert not session["secure"]


def test_https_makes_both_cookies_secure() -> None:
    code = (
        "from django.conf import settings as s; "
        "print(s.CSRF_COOKIE_SECURE, s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_HTTPONLY, "
        "s.SECURE_HSTS_SECONDS)"
    )
    result = _manage({"DASHBOARD_SECRET_KEY": "k", "DASHBOARD_HTTPS": "true"}, "shell", "-c", code)
    assert result.returncode == 0, result.stderr
    # the last line: `shell` may first say what it imported
    assert result.stdout.strip().splitlines()[-1].split() == ["True", "True", "False", "31536000"]
