"""Every HTTP endpoint answers an error with one body: `{"error": code, "message": text}`.

The codes are DRF's (`not_authenticated`, `authentication_failed`, `permission_denied`,
`throttled`, `not_found`, `method_not_allowed`, `parse_error`, `unsupported_media_type`) and the
project's few of its own (`invalid_parameter`, which also names the `parameter`;
`invalid_notice`; `unavailable`), listed once in `shared/http_errors.py`. Black-box: each
endpoint through Django's test client, from an address off loopback where it matters.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from access.models import ApiToken
from access.services import token_issue
from shared.http_errors import ERROR_CODES, ErrorCode

pytestmark = [
    pytest.mark.integration,
    pytest.mark.django_db,
    pytest.mark.usefixtures("fresh_access_state", "deployment_prefix"),
]

OUTSIDE = "203.0.113.20"  # a documentation address: not loopback
AUTHENTICATED = [
    "/metrics",
    "/debug",
    "/api/v1/state",
    "/api/v1/clients",
    "/api/v1/history?type=market_data",
]
STAFF_ONLY_GET = ["/debug", "/api/v1/clients"]
STAFF_ONLY_POST = [
    "/api/v1/clients/web-1-abcd/kick",
    "/api/v1/tokens/nobody/kick",
    "/api/v1/users/nobody/kick",
    "/api/v1/notice",
]


def issue(**options: Any) -> str:
    """A token's raw key."""
    return token_issue(name=f"e-{ApiToken.objects.count()}", **options)[1]


def bearer(key: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {key}", "REMOTE_ADDR": OUTSIDE}


def assert_error(response: Any, status: int, code: ErrorCode, *extra: str) -> dict[str, Any]:
    """The response is `status` with the one error body carrying `code` (and `extra` keys)."""
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    assert set(body) == {"error", "message", *extra}, body
    assert body["error"] == code.value
    assert body["error"] in ERROR_CODES
    assert isinstance(body["message"], str)
    assert body["message"]
    return body


@pytest.mark.parametrize("path", AUTHENTICATED)
def test_no_credentials_off_loopback_is_401_not_authenticated(client: Client, path: str) -> None:
    response = client.get(path, REMOTE_ADDR=OUTSIDE)
    assert_error(response, 401, ErrorCode.NOT_AUTHENTICATED)
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("path", AUTHENTICATED)
def test_a_bad_token_is_401_authentication_failed(client: Client, path: str) -> None:
    response = client.get(path, **bearer("dsk_not-a-real-key"))
    body = assert_error(response, 401, ErrorCode.AUTHENTICATION_FAILED)
    assert body["message"] == "invalid, expired or revoked token"


@pytest.mark.parametrize("path", AUTHENTICATED)
def test_a_blocked_address_is_429_throttled(client: Client, path: str, settings: Any) -> None:
    settings.CONFIG = settings.CONFIG.model_copy(update={"auth_failures_per_ip": 1})
    good = issue(staff=True)
    assert client.get(path, **bearer("dsk_guess")).status_code == 401
    assert_error(client.get(path, **bearer(good)), 429, ErrorCode.THROTTLED)


@pytest.mark.parametrize("path", STAFF_ONLY_GET)
def test_a_non_staff_token_on_a_staff_read_is_403_permission_denied(
    client: Client, path: str
) -> None:
    assert_error(client.get(path, **bearer(issue())), 403, ErrorCode.PERMISSION_DENIED)


@pytest.mark.parametrize("path", STAFF_ONLY_POST)
def test_a_non_staff_token_on_a_staff_action_is_403_permission_denied(
    client: Client, path: str
) -> None:
    response = client.post(path, {}, content_type="application/json", **bearer(issue()))
    assert_error(response, 403, ErrorCode.PERMISSION_DENIED)


def test_a_history_token_outside_its_scope_is_403_permission_denied(client: Client) -> None:
    key = issue(channels=["market_data:BTCUSDT"])
    response = client.get("/api/v1/history?type=account", **bearer(key))
    assert_error(response, 403, ErrorCode.PERMISSION_DENIED)


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("type=bogus", "type"),
        ("type=market_data&limit=0", "limit"),
        ("type=market_data&format=csv", "from"),  # an export
    ],
)
def test_a_bad_history_parameter_is_400_invalid_parameter(
    client: Client, query: str, parameter: str
) -> None:
    response = client.get(f"/api/v1/history?{query}", **bearer(issue()))
    body = assert_error(response, 400, ErrorCode.INVALID_PARAMETER, "parameter")
    assert body["parameter"] == parameter


def test_kicking_nobody_is_404_not_found(client: Client) -> None:
    response = client.post("/api/v1/tokens/nobody/kick", **bearer(issue(staff=True)))
    assert_error(response, 404, ErrorCode.NOT_FOUND)


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        ('{"level": "loud", "text": "hi"}', "application/json", 400, ErrorCode.INVALID_NOTICE),
        ("{not json", "application/json", 400, ErrorCode.PARSE_ERROR),
        ("level=info", "application/x-www-form-urlencoded", 415, ErrorCode.UNSUPPORTED_MEDIA_TYPE),
    ],
)
def test_a_bad_notice_is_refused_with_the_one_body(
    client: Client, body: str, content_type: str, status: int, code: ErrorCode
) -> None:
    response = client.post(
        "/api/v1/notice", body, content_type=content_type, **bearer(issue(staff=True))
    )
    assert_error(response, status, code)


@pytest.mark.parametrize(
    "path", ["/health", "/health/ready", "/metrics", "/debug", "/api/v1/state", "/api/v1/history"]
)
def test_a_method_an_endpoint_does_not_take_is_405_method_not_allowed(
    client: Client, django_user_model: type[User], path: str
) -> None:
    client.force_login(django_user_model.objects.create_user("ops", "", "pw", is_staff=True))
    response = client.delete(path, REMOTE_ADDR="127.0.0.1")
    body = assert_error(response, 405, ErrorCode.METHOD_NOT_ALLOWED)
    assert body["message"] == 'Method "DELETE" not allowed.'
    assert "GET" in response["Allow"]


def test_the_vocabulary_is_drfs_where_drf_has_a_code() -> None:
    from rest_framework import exceptions  # type: ignore[import-untyped]

    drf = {
        ErrorCode.NOT_AUTHENTICATED: exceptions.NotAuthenticated,
        ErrorCode.AUTHENTICATION_FAILED: exceptions.AuthenticationFailed,
        ErrorCode.PERMISSION_DENIED: exceptions.PermissionDenied,
        ErrorCode.THROTTLED: exceptions.Throttled,
        ErrorCode.NOT_FOUND: exceptions.NotFound,
        ErrorCode.METHOD_NOT_ALLOWED: exceptions.MethodNotAllowed,
        ErrorCode.PARSE_ERROR: exceptions.ParseError,
        ErrorCode.NOT_ACCEPTABLE: exceptions.NotAcceptable,
        ErrorCode.UNSUPPORTED_MEDIA_TYPE: exceptions.UnsupportedMediaType,
        ErrorCode.INVALID: exceptions.ValidationError,
        ErrorCode.ERROR: exceptions.APIException,
    }
    for code, exception in drf.items():
        assert code.value == exception.default_code
