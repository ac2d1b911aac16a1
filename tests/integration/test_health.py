"""GET /health: liveness of the web process."""

from __future__ import annotations

from django.test import Client


def test_health_answers_ok(client: Client) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "service": "dashboard-server"}


def test_health_refuses_other_methods(client: Client) -> None:
    assert client.post("/health").status_code == 405
