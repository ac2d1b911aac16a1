"""Tokens, sessions, scopes, limits, CORS and security headers on the HTTP entry points."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from access.credentials import CACHE
from access.models import ApiToken
from access.services import origin_allow, token_issue, token_revoke

pytestmark = [
    pytest.mark.integration,
    pytest.mark.django_db,
    pytest.mark.usefixtures("fresh_access_state"),
]

ENDPOINTS = ["/api/v1/state", "/api/v1/history?type=market_data", "/api/v1/clients", "/debug"]
OUTSIDE = "203.0.113.10"  # a documentation address: not loopback


def bearer(key: str) -> dict[str, str]:
    """Client keyword arguments for `Authorization: Bearer key`."""
    return {"HTTP_AUTHORIZATION": f"Bearer {key}"}


def issue(**options: Any) -> str:
    """A token's raw key."""
    return token_issue(name=f"t-{ApiToken.objects.count()}", **options)[1]


@pytest.mark.parametrize("path", ENDPOINTS)
def test_no_credentials_are_refused_with_401(client: Client, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 401
    assert response.json()["error"] == "not_authenticated"
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("path", ENDPOINTS)
@pytest.mark.parametrize(
    "header",
    [
        "Bearer dsk_not-a-real-key",
        "Bearer " + "dsk_" + "x" * 500,  # oversized
        "Bearer \x00\x01",  # hostile bytes
        "Bearer ",
        "Basic dXNlcjpwYXNz",  # another scheme: no credential, so 401 not_authenticated
    ],
)
def test_wrong_credentials_are_refused_with_401(client: Client, path: str, header: str) -> None:
    response = client.get(path, HTTP_AUTHORIZATION=header)
    assert response.status_code == 401
    assert response.json()["error"] in ("authentication_failed", "not_authenticated")


@pytest.mark.parametrize("path", ENDPOINTS)
def test_revoked_and_expired_tokens_are_refused(client: Client, path: str) -> None:
    revoked = issue(staff=True)
    token_revoke(name=ApiToken.objects.get(prefix=revoked[:12]).name)
    expired = issue(staff=True)
    ApiToken.objects.filter(prefix=expired[:12]).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    for key in (revoked, expired):
        response = client.get(path, **bearer(key))
        assert response.status_code == 401
        assert response.json() == {
            "error": "authentication_failed",
            "message": "invalid, expired or revoked token",
        }


def test_a_token_stops_working_once_revoked_and_the_cache_expires(client: Client) -> None:
    key = issue()
    assert client.get("/api/v1/state", **bearer(key)).status_code == 200
    token_revoke(name=ApiToken.objects.get(prefix=key[:12]).name)
    CACHE.clear()  # what access_cache_s (2 s) does by itself
    assert client.get("/api/v1/state", **bearer(key)).status_code == 401


def test_a_plain_token_reads_state_and_history_but_not_staff_endpoints(client: Client) -> None:
    key = issue()
    assert client.get("/api/v1/state", **bearer(key)).status_code == 200
    assert client.get("/api/v1/history?type=market_data", **bearer(key)).status_code == 200
    for path in ("/api/v1/clients", "/debug"):
        response = client.get(path, **bearer(key))
        assert response.status_code == 403
        assert response.json()["error"] == "permission_denied"
    token = ApiToken.objects.get(prefix=key[:12])
    assert token.last_used_at is not None


def test_a_staff_token_reads_the_staff_endpoints(client: Client) -> None:
    key = issue(staff=True)
    assert client.get("/api/v1/clients", **bearer(key)).status_code == 200
    body = client.get("/debug", **bearer(key)).json()
    assert {"timestamp", "sequence", "counts"} <= set(body)


def test_history_needs_the_history_scope(client: Client) -> None:
    key = issue(history=False)
    response = client.get("/api/v1/history?type=market_data", **bearer(key))
    assert response.status_code == 403
    assert response.json()["message"] == "this token may not read history"
    assert client.get("/api/v1/state", **bearer(key)).status_code == 200


def test_a_scoped_token_sees_only_its_channels_of_the_state(client: Client) -> None:
    key = issue(channels=["market_data", "account"])
    body = client.get("/api/v1/state", **bearer(key)).json()
    assert set(body) == {"market_data", "account", "seq", "epoch"}  # contract 4.1: with both


def test_a_logged_in_user_reads_state_and_history(
    client: Client, django_user_model: type[User]
) -> None:
    client.force_login(django_user_model.objects.create_user("trader", "", "pw-1"))
    assert client.get("/api/v1/state").status_code == 200
    assert client.get("/api/v1/history?type=market_data").status_code == 200
    assert client.get("/api/v1/clients").status_code == 403


def test_failed_authentications_block_the_address_then_even_a_good_token(
    client: Client, settings: Any
) -> None:
    settings.CONFIG = settings.CONFIG.model_copy(update={"auth_failures_per_ip": 3})
    good = issue()
    for _ in range(3):
        response = client.get("/api/v1/state", REMOTE_ADDR=OUTSIDE, **bearer("dsk_guess"))
        assert response.status_code == 401
    blocked = client.get("/api/v1/state", REMOTE_ADDR=OUTSIDE, **bearer(good))
    assert blocked.status_code == 429
    assert blocked.json()["error"] == "throttled"
    # another address is not affected
    assert (
        client.get("/api/v1/state", REMOTE_ADDR="203.0.113.11", **bearer(good)).status_code == 200
    )


def test_keys_are_never_logged(client: Client, caplog: pytest.LogCaptureFixture) -> None:
    good = issue()
    bad = "dsk_" + "q" * 43
    with caplog.at_level(logging.DEBUG):
        client.get("/api/v1/state", **bearer(good))
        client.get("/api/v1/state", **bearer(bad))
        client.get("/metrics", REMOTE_ADDR=OUTSIDE, **bearer(bad))
    text = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert good not in text
    assert bad not in text


def test_metrics_off_loopback_take_a_token(client: Client) -> None:
    assert client.get("/metrics", REMOTE_ADDR=OUTSIDE).status_code == 401
    assert client.get("/metrics", REMOTE_ADDR=OUTSIDE, **bearer("dsk_nope")).status_code == 401
    response = client.get("/metrics", REMOTE_ADDR=OUTSIDE, **bearer(issue()))
    assert response.status_code == 200
    assert b"dashboard_rate_limit_hits_total" in response.content


def test_cors_answers_only_allowed_origins(client: Client) -> None:
    origin_allow(origin="https://desk.example")
    key = issue()
    allowed = client.get("/api/v1/state", HTTP_ORIGIN="https://desk.example", **bearer(key))
    assert allowed["Access-Control-Allow-Origin"] == "https://desk.example"
    other = client.get("/api/v1/state", HTTP_ORIGIN="https://evil.example", **bearer(key))
    assert "Access-Control-Allow-Origin" not in other
    preflight = client.options(
        "/api/v1/history",
        HTTP_ORIGIN="https://desk.example",
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="GET",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization",
    )
    assert preflight["Access-Control-Allow-Origin"] == "https://desk.example"
    assert "authorization" in preflight["Access-Control-Allow-Headers"]
    # a malformed Origin header is simply not allowed
    odd = client.get("/api/v1/state", HTTP_ORIGIN="javascript:alert(1)", **bearer(key))
    assert "Access-Control-Allow-Origin" not in odd


def test_http_responses_carry_security_headers(client: Client) -> None:
    response = client.get("/health")
    csp = response["Content-Security-Policy"]
    assert "script-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["Cross-Origin-Opener-Policy"] == "same-origin"


@pytest.mark.parametrize("path", ["/login", "/admin/login/"])
def test_failed_logins_block_the_address(
    client: Client, settings: Any, django_user_model: type[User], path: str
) -> None:
    settings.CONFIG = settings.CONFIG.model_copy(update={"auth_failures_per_ip": 3})
    django_user_model.objects.create_user("trader", "", "right-password-1", is_staff=True)
    wrong = {"username": "trader", "password": "guess"}
    for _ in range(3):
        assert client.post(path, wrong, REMOTE_ADDR=OUTSIDE).status_code == 200  # form again
    right = {"username": "trader", "password": "right-password-1"}
    assert client.post(path, right, REMOTE_ADDR=OUTSIDE).status_code == 429
    # another address logs in
    assert client.post(path, right, REMOTE_ADDR="203.0.113.12").status_code == 302


def test_live_sessions_are_those_of_active_users_not_logged_out(
    client: Client, django_user_model: type[User]
) -> None:
    from django.contrib.sessions.models import Session

    from access.credentials import live_session_keys

    alice = django_user_model.objects.create_user("alice", "", "pw-1")
    bob = django_user_model.objects.create_user("bob", "", "pw-2")
    keys = {}
    for user in (alice, bob):
        client.force_login(user)
        keys[user.username] = client.session.session_key
        client.cookies.clear()
    assert live_session_keys([*keys.values(), "no-such-session"]) == set(keys.values())
    bob.is_active = False
    bob.save()
    assert live_session_keys(keys.values()) == {keys["alice"]}
    Session.objects.filter(session_key=keys["alice"]).delete()  # what logging out does
    assert live_session_keys(keys.values()) == set()
