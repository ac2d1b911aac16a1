"""GET /health: liveness of the web process."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client


def test_health_answers_ok(client: Client) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "service": "dashboard-server"}


def test_health_refuses_other_methods(client: Client) -> None:
    assert client.post("/health").status_code == 405


@pytest.mark.django_db
def test_head_and_options_answer_like_get_and_any_origin_may_read_it(client: Client) -> None:
    """The earlier service's runbook: `curl -i -X OPTIONS /health` shows ACAO: *."""
    get = client.get("/health", HTTP_ORIGIN="https://elsewhere.example")
    head = client.head("/health")
    options = client.options("/health", HTTP_ORIGIN="https://elsewhere.example")
    for response in (get, head, options):
        assert response.status_code == 200
        assert response["Access-Control-Allow-Origin"] == "*"
        assert response["Content-Type"] == "application/json"
    assert options.json() == get.json() == {"status": "ok", "service": "dashboard-server"}
    assert options["Allow"] == "GET, HEAD, OPTIONS"


@pytest.mark.django_db
def test_only_health_is_open_to_any_origin(client: Client) -> None:
    for path in ("/health/ready", "/api/v1/state", "/metrics", "/api/schema"):
        response = client.options(path, HTTP_ORIGIN="https://elsewhere.example")
        assert response.get("Access-Control-Allow-Origin") != "*", path


@pytest.mark.django_db
@pytest.mark.usefixtures("fresh_access_state")
def test_liveness_with_an_origin_header_touches_no_database(
    client: Client, django_assert_num_queries: Any
) -> None:
    """Liveness must not depend on PostgreSQL: an Origin header once cost an origin lookup."""
    with django_assert_num_queries(0):
        response = client.get("/health", HTTP_ORIGIN="https://elsewhere.example")
    assert response.status_code == 200
