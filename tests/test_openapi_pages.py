"""/docs and /redoc work offline: every file they load is served by the app itself."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from citewise.settings import Settings

# src="..." and href="..." in a page, and any absolute URL anywhere in it.
REFERENCE = re.compile(r"""(?:src|href)=["']([^"']+)["']""")
ABSOLUTE = re.compile(r"(?:https?:)?//[\w.-]+")
KINDS = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    """The app without its lifespan: these pages need no services."""
    return TestClient(create_app(Settings(home=tmp_path, redis_url="off")))


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_pages_load_only_what_the_app_serves(client: TestClient, page: str) -> None:
    response = client.get(page)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert ABSOLUTE.findall(response.text) == []  # no CDN, no web fonts
    loaded = REFERENCE.findall(response.text) + re.findall(r"url: '([^']+)'", response.text)
    loaded += re.findall(r'spec-url="([^"]+)"', response.text)
    assert "/openapi.json" in loaded
    for url in loaded:
        assert url.startswith("/"), url
        fetched = client.get(url)
        assert fetched.status_code == 200, url
        if url != "/openapi.json":
            kind = KINDS[Path(url).suffix]
            assert fetched.headers["content-type"].startswith(kind), url
            assert len(fetched.content) > 1000, url


def test_swagger_ui_sends_the_schema_address_to_no_validator(client: TestClient) -> None:
    assert '"validatorUrl": null' in client.get("/docs").text


def test_the_assets_are_swagger_ui_and_redoc(client: TestClient) -> None:
    bundle = client.get("/docs/assets/swagger-ui-bundle.js").text
    assert "SwaggerUIBundle" in bundle
    assert "Redoc" in client.get("/docs/assets/redoc.standalone.js").text
    assert ".swagger-ui" in client.get("/docs/assets/swagger-ui.css").text


def test_only_the_listed_files_are_served(client: TestClient) -> None:
    for path in ("/docs/assets/core.py", "/docs/assets/..%2F__init__.py", "/docs/assets/"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert response.json()["error"]["code"] in ("not_found", "http_error"), path


def test_behind_a_path_prefix_the_pages_point_under_it(tmp_path: Path) -> None:
    app = create_app(Settings(home=tmp_path, redis_url="off"))
    with_prefix = TestClient(app, root_path="/citewise")
    page = with_prefix.get("/docs").text
    assert "url: '/citewise/openapi.json'" in page
    assert 'href="/citewise/docs/assets/swagger-ui.css"' in page
