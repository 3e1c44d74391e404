"""The HTTP service through its real app factory."""

from __future__ import annotations

from collections.abc import Callable

from fastapi.testclient import TestClient

from api.main import create_app
from citewise.settings import Settings


def test_healthz_answers(make_settings: Callable[..., Settings]) -> None:
    with TestClient(create_app(make_settings())) as client:
        response = client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}
    assert client.app.openapi()["paths"]["/healthz"]["get"]["summary"]


def test_a_method_the_route_does_not_take_is_a_405_naming_the_ones_it_does(
    make_settings: Callable[..., Settings],
) -> None:
    with TestClient(create_app(make_settings())) as client:
        response = client.delete("/v1/ask")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert response.json()["error"]["code"] == "http_error"
