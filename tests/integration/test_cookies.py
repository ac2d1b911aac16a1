"""What the session and CSRF cookies are, as a browser receives them (docs/SECURITY.md)."""

from __future__ import annotations

import os
import subprocess
import sys
from http.cookies import Morsel
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.test import Client

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

ROOT = Path(__file__).resolve().parents[2]
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
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.CSRF_COOKIE_SECURE, s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_HTTPONLY, "
        "s.SECURE_HSTS_SECONDS)"
    )
    env = {
        "PATH": os.environ["PATH"],
        "DASHBOARD_SECRET_KEY": "k",
        "DASHBOARD_HTTPS": "true",
        "DJANGO_SETTINGS_MODULE": "dashboard_project.settings",
    }
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.split() == ["True", "True", "False", "31536000"]
