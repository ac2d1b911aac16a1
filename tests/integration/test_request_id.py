"""Request ids: generated or taken from `X-Request-ID`, echoed, and on every log line of the
request, for sync and async views behind sync and async middleware chains."""

from __future__ import annotations

import logging
import re

import pytest
from django.http import HttpRequest, JsonResponse
from django.test import AsyncClient, Client
from django.urls import path

from dashboard_project.request_id import request_id_for
from shared.logconfig import RequestIdFilter, current_request_id

pytestmark = [pytest.mark.integration, pytest.mark.urls(__name__)]

log = logging.getLogger("tests.request_id")
GENERATED = re.compile(r"[0-9a-f]{32}")


def sync_view(request: HttpRequest) -> JsonResponse:
    log.info("sync view")
    return JsonResponse({"id": request.request_id})  # type: ignore[attr-defined]


async def async_view(request: HttpRequest) -> JsonResponse:
    log.info("async view")
    return JsonResponse({"id": request.request_id})  # type: ignore[attr-defined]


urlpatterns = [path("sync", sync_view), path("async", async_view)]


def view_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == "tests.request_id"]


def test_an_id_is_generated() -> None:
    first = Client().get("/sync")
    second = Client().get("/sync")
    assert GENERATED.fullmatch(first["X-Request-ID"])
    assert first["X-Request-ID"] != second["X-Request-ID"]
    assert first.json()["id"] == first["X-Request-ID"]


@pytest.mark.parametrize(
    "incoming",
    ["4bf92f3577b34da6a3ce929d0e0e4736", "req-1.2_3", "a" * 64],
)
def test_a_safe_incoming_id_is_echoed(incoming: str) -> None:
    response = Client().get("/sync", headers={"X-Request-ID": incoming})
    assert response["X-Request-ID"] == incoming


@pytest.mark.parametrize(
    "incoming",
    ["a" * 65, "", "two words", "id;drop", "<script>", "id\u00e9", "../../etc/passwd%00", "abc\n"],
)
def test_a_hostile_or_oversized_id_is_replaced(incoming: str) -> None:
    response = Client().get("/sync", headers={"X-Request-ID": incoming})
    assert GENERATED.fullmatch(response["X-Request-ID"])


@pytest.mark.parametrize("view", ["/sync", "/async"])
def test_log_records_carry_the_id_behind_sync_middleware(
    view: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        response = Client().get(view, headers={"X-Request-ID": "sync-chain-1"})
    assert response["X-Request-ID"] == "sync-chain-1"
    [line] = view_lines(caplog)
    assert line.request_id == "sync-chain-1"  # type: ignore[attr-defined]


@pytest.mark.parametrize("view", ["/sync", "/async"])
async def test_log_records_carry_the_id_behind_async_middleware(
    view: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        response = await AsyncClient().get(view)
    request_id = response["X-Request-ID"]
    assert GENERATED.fullmatch(request_id)
    [line] = view_lines(caplog)
    assert line.request_id == request_id  # type: ignore[attr-defined]


def test_one_access_line_per_request(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        response = Client().get("/sync?x=1", headers={"X-Request-ID": "access-1"})
    [line] = [r for r in caplog.records if r.name == "dashboard_project.access"]
    assert line.request_id == "access-1"  # type: ignore[attr-defined]
    assert (line.method, line.path, line.status) == ("GET", "/sync", 200)  # type: ignore[attr-defined]
    assert line.duration_ms >= 0  # type: ignore[attr-defined]
    assert response.status_code == 200


def test_the_id_is_gone_after_the_request(caplog: pytest.LogCaptureFixture) -> None:
    Client().get("/sync")
    assert current_request_id.get() is None
    caplog.clear()
    with caplog.at_level(logging.INFO):
        log.info("outside a request")
    [line] = view_lines(caplog)
    assert not hasattr(line, "request_id")


def test_the_filter_keeps_an_explicit_id() -> None:
    record = logging.makeLogRecord({"msg": "m", "request_id": "explicit"})
    token = current_request_id.set("ambient")
    try:
        assert RequestIdFilter().filter(record)
    finally:
        current_request_id.reset(token)
    assert record.request_id == "explicit"  # type: ignore[attr-defined]


def test_request_id_for() -> None:
    assert request_id_for("abc") == "abc"
    assert GENERATED.fullmatch(request_id_for(None))
    assert GENERATED.fullmatch(request_id_for("a\nb"))
