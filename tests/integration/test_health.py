"""GET /health: liveness of the web process."""

from __future__ import annotations

import pytest
from django.test import Client


def test_health_answers_ok(client: Client) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "service": "dashboard-server"}


def test_health_refuses_other_methods(client: Client) -> None:
    assert client.post("/health").status_code == 405


# With an Origin header, django-cors-headers asks access.signals whether the origin is enabled
# (a database lookup), whatever the path.
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
