"""`/api/schema` states how to authenticate and every error an operation can answer."""

from __future__ import annotations

import pytest
import yaml
from django.test import Client

pytestmark = [pytest.mark.integration]


def schema(client: Client) -> dict:  # type: ignore[type-arg]
    response = client.get("/api/schema")
    assert response.status_code == 200
    return dict(yaml.safe_load(response.content))


@pytest.mark.django_db
def test_bearer_tokens_and_sessions_both_authenticate(client: Client) -> None:
    document = schema(client)
    assert document["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "An API token (`dsk_...`).",
    }
    for path, methods in document["paths"].items():
        for operation in methods.values():
            assert {"bearerAuth": []} in operation["security"], path
            assert {"cookieAuth": []} in operation["security"], path


@pytest.mark.django_db
def test_every_error_status_has_the_error_body(client: Client) -> None:
    document = schema(client)
    body = document["components"]["schemas"]["ApiError"]
    assert body["required"] == ["error", "message"]
    for path, methods in document["paths"].items():
        for operation in methods.values():
            responses = operation["responses"]
            assert {"401", "403", "429"} <= set(responses), path
            for code, response in responses.items():
                if code.startswith(("4", "5")):
                    assert "application/json" in response["content"], (path, code)


@pytest.mark.django_db
def test_history_parameters_state_their_bounds(client: Client) -> None:
    parameters = {
        p["name"]: p["schema"]
        for p in schema(client)["paths"]["/api/v1/history"]["get"]["parameters"]
    }
    assert parameters["limit"] == {"type": "integer", "minimum": 1, "maximum": 1000}
    assert parameters["symbol"]["pattern"] == "^[A-Za-z0-9_-]{1,64}(,[A-Za-z0-9_-]{1,64})*$"
    assert parameters["cursor"]["pattern"] == "^[A-Za-z0-9_-]+$"
