"""API tokens and allowed origins: issue, verify, revoke, expire; CLI; admin shows keys once."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone

from access.models import AllowedOrigin, ApiToken, hash_key
from access.services import (
    normalize_origin,
    origin_allow,
    token_authenticate,
    token_issue,
    token_revoke,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db]


def test_a_token_is_stored_only_as_a_hash_and_verifies() -> None:
    token, raw_key = token_issue(name="quant-1", channels=["market_data"], history=True)
    assert raw_key.startswith("dsk_")
    assert len(raw_key) > 40
    stored = ApiToken.objects.get(pk=token.pk)
    assert stored.key_hash == hash_key(raw_key)
    assert raw_key not in {stored.prefix, stored.key_hash, stored.name}
    assert raw_key.startswith(stored.prefix)
    assert token_authenticate(raw_key) == stored
    assert stored.allows_channel("market_data")
    assert not stored.allows_channel("orders")


@pytest.mark.parametrize(
    "raw", ["", "dsk_", "dsk_wrong", "not-a-key", "dsk_" + "x" * 500, "DSK_abc", "dsk_\x00"]
)
def test_wrong_keys_are_refused(raw: str) -> None:
    token_issue(name="real")
    assert token_authenticate(raw) is None


def test_revoked_and_expired_tokens_are_refused() -> None:
    _, revoked_key = token_issue(name="revoked")
    token_revoke(name="revoked")
    assert token_authenticate(revoked_key) is None
    expired, expired_key = token_issue(name="expired", expires_days=1)
    expired.expires_at = timezone.now() - timedelta(seconds=1)
    expired.save()
    assert token_authenticate(expired_key) is None


def test_unknown_channels_and_bad_expiry_are_refused() -> None:
    with pytest.raises(ValidationError, match="unknown channel 'candles'"):
        token_issue(name="x", channels=["orders", "candles"])
    with pytest.raises(ValidationError):
        token_issue(name="y", expires_days=0)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("https://Desk.Example", "https://desk.example"),
        ("http://localhost:3000/", "http://localhost:3000"),
        ("https://desk.example:8443", "https://desk.example:8443"),
    ],
)
def test_origins_are_normalized(text: str, expected: str) -> None:
    assert normalize_origin(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "desk.example",
        "ftp://desk.example",
        "https://",
        "https://a.b/path",
        "https://a.b?x=1",
        "https://user@a.b",
        "javascript:alert(1)",
        "",
    ],
)
def test_things_that_are_not_origins_are_refused(text: str) -> None:
    with pytest.raises(ValidationError):
        normalize_origin(text)


def test_cli_issues_revokes_and_allows() -> None:
    out = StringIO()
    call_command(
        "issue_token",
        "ops",
        "--staff",
        "--channels",
        "orders",
        "positions",
        "--expires-days",
        "7",
        stdout=out,
    )
    raw_key = out.getvalue().strip().splitlines()[-1]
    token = token_authenticate(raw_key)
    assert token is not None
    assert token.is_staff_token
    assert token.channels == ["orders", "positions"]
    assert token.expires_at is not None
    with pytest.raises(CommandError, match="already exists"):
        call_command("issue_token", "ops", stdout=StringIO())
    with pytest.raises(CommandError, match="unknown channel"):
        call_command("issue_token", "other", "--channels", "nope", stdout=StringIO())
    call_command("revoke_token", "ops", stdout=StringIO())
    assert token_authenticate(raw_key) is None
    with pytest.raises(CommandError, match="no token named"):
        call_command("revoke_token", "ghost", stdout=StringIO())
    call_command("allow_origin", "https://Desk.Example/", stdout=StringIO())
    assert AllowedOrigin.objects.get().origin == "https://desk.example"
    with pytest.raises(CommandError):
        call_command("allow_origin", "not an origin", stdout=StringIO())
    assert origin_allow(origin="https://desk.example").enabled


def test_admin_shows_a_new_key_once_and_stores_only_its_hash(client: Client) -> None:
    admin = User.objects.create_superuser("root", "root@example.com", "pw-for-tests-only")
    client.force_login(admin)
    response = client.post(
        "/admin/access/apitoken/add/",
        {"name": "from-admin", "channels": "[]", "can_read_history": "on"},
        follow=True,
    )
    assert response.status_code == 200
    shown = [str(m) for m in response.context["messages"]]
    assert any("shown only now: dsk_" in m for m in shown), shown
    raw_key = next(m for m in shown if "dsk_" in m).split("shown only now: ")[1]
    token = ApiToken.objects.get(name="from-admin")
    assert token_authenticate(raw_key) == token
    page = client.get(f"/admin/access/apitoken/{token.pk}/change/").content.decode()
    assert raw_key not in page
    assert token.key_hash not in page


def test_admin_normalizes_origins(client: Client) -> None:
    admin = User.objects.create_superuser("root", "root@example.com", "pw-for-tests-only")
    client.force_login(admin)
    client.post(
        "/admin/access/allowedorigin/add/",
        {"origin": "HTTPS://Desk.Example:443", "enabled": "on", "note": ""},
    )
    assert AllowedOrigin.objects.get().origin == "https://desk.example:443"
    response = client.post(
        "/admin/access/allowedorigin/add/", {"origin": "desk.example", "enabled": "on", "note": ""}
    )
    assert b"not an origin" in response.content


def test_demo_access_creates_the_admin_once_and_a_fresh_token(tmp_path: Path) -> None:
    password_file = tmp_path / "pw"
    first, second = StringIO(), StringIO()
    call_command("demo_access", "--password-file", str(password_file), stdout=first)
    call_command("demo_access", "--password-file", str(password_file), stdout=second)
    password = password_file.read_text().strip()
    admin = User.objects.get(username="admin")
    assert admin.is_superuser
    assert admin.check_password(password)
    assert "created" in first.getvalue()
    assert "kept" in second.getvalue()
    keys = [
        line.split("--token ")[1].strip()
        for out in (first, second)
        for line in out.getvalue().splitlines()
        if "--token " in line
    ]
    assert len(keys) == 2
    assert token_authenticate(keys[0]) is None  # replaced by the second
    token = token_authenticate(keys[1])
    assert token is not None
    assert token.is_staff_token
